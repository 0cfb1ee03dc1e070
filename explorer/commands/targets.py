"""``tinyfront targets``: list the boards in a targets file."""

from __future__ import annotations

import argparse

from explorer.table import format_table
from search.targets import load_targets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list the boards and their budgets")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.set_defaults(run=run)


def _kb(value: float) -> str:
    if value >= 1024 * 1024:
        return f"{value / 1024 / 1024:g} GB"
    if value >= 4096:
        return f"{value / 1024:g} MB"
    return f"{value:g} KiB"


def run(args: argparse.Namespace) -> int:
    targets = load_targets(args.targets)
    rows = [
        (
            t.name,
            t.core,
            f"{t.clock_mhz:g} MHz",
            _kb(t.flash_kb),
            _kb(t.sram_kb),
            t.runtime,
            _kb(t.flash_budget_kb),
            _kb(t.sram_budget_kb),
            f"{t.latency_budget_ms:g} ms",
        )
        for t in targets.values()
    ]
    headers = ("target", "core", "clock", "flash", "SRAM", "runtime", "model flash", "model SRAM", "latency")
    print(format_table(headers, rows))
    print("\nmodel flash / model SRAM: what the board leaves for the model after the application's reservation.")
    return 0
