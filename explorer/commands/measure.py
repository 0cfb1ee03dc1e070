"""``tinyfront measure MODEL.tflite --target NAME``: flash, SRAM and latency of a model on a board."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from explorer.table import format_table
from search.errors import MeasurementError
from search.figures import Figure


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="measure a .tflite for a TFLite Micro target (flash, SRAM, latency)")
    p.add_argument("model", metavar="MODEL.tflite", help="the model file")
    p.add_argument("--target", required=True, metavar="NAME", help="target name from the targets file")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")
    p.set_defaults(run=run)


def _kind(f: Figure) -> str:
    return f.kind + (f" ±{f.error_pct:g}%" if f.error_pct is not None else "")


def _verdict(value: float, budget: float | None) -> str:
    if budget is None:
        return ""
    return "fits" if value <= budget else "does NOT fit"


def run(args: argparse.Namespace) -> int:
    from search.measure import measure_tflite
    from search.targets import get_target

    target = get_target(args.target, args.targets)
    path = Path(args.model)
    try:
        model = path.read_bytes()
    except FileNotFoundError:
        raise MeasurementError(f"model file not found: {path}") from None
    except OSError as exc:
        raise MeasurementError(f"cannot read model file {path}: {exc.strerror}") from None
    m = measure_tflite(model, target)
    if args.json:
        print(json.dumps({"model": str(path), "target": target.to_dict(), **m.to_dict()}, indent=2))
        return 0
    figures: list[tuple[str, Figure, float | None, str]] = [
        ("flash: model array", m.flash["model"], None, ""),
        ("flash: TFLM runtime code", m.flash["runtime_code"], None, ""),
        ("flash: total", m.flash["total"], target.flash_budget_kb, "kB"),
        ("SRAM: arena + runtime", m.sram, target.sram_budget_kb, "kB"),
        ("latency", m.latency, target.latency_budget_ms, "ms"),
    ]
    rows = [
        (name, f"{f.value:,.1f} {f.unit}", _kind(f), f"{b:,.0f} {unit}" if b is not None else "", _verdict(f.value, b))
        for name, f, b, unit in figures
    ]
    print(f"{path.name} on {target.name} ({target.core} @ {target.clock_mhz:g} MHz)\n")
    print(format_table(("figure", "value", "kind", "budget", "verdict"), rows))
    g, a = m.graph, m.arena
    print(f"\nMACs: {g.macs:,}   params: {g.params:,}   weights: {g.weight_bytes:,} B   "
          f"exact-zero weights: {100 * g.zero_weight_fraction:.1f}%")  # fmt: skip
    print(f"ops: {', '.join(g.ops)}")
    print(f"TFLM arena (measured here, x86-64): {a.arena_bytes:,} B; for a 32-bit MCU: {a.arena_bytes_32bit:,} B")
    print(format_table(("arena part", "bytes"), [(k, f"{v:,}") for k, v in a.breakdown.items()]))
    print(f"\nlatency: {m.latency.method}")
    return 0
