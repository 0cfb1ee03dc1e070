"""``tinyfront calibrate LATENCIES.csv``: a per-target CPI calibration from your own board's latencies.

The CSV has the columns ``file,target,latency_ms,engine``: a ``.tflite`` (path relative to the
CSV), a target name of the targets file, the latency you measured on that board (ms) and the
engine that ran it (e.g. ``tflm+cmsis-nn``). Every file is run on the device runner of the
target's core (instruction counts measured in QEMU on TFLM + CMSIS-NN); one cycles-per-instruction
per target is fitted (``search/cpi_model.py``, without the flash term: a few rows cannot separate
it) and written as ``<out>/<target>.json`` with its leave-one-out error and 90 % interval. The
command prints the ``latency_calibration = "..."`` line that makes the target use it (paste it into
the target's table in the targets file; the path is relative to that file when it can be).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path
from statistics import median

from explorer.table import format_table
from search.errors import ConfigError

COLUMNS = ("file", "target", "latency_ms", "engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a per-target latency calibration to latencies measured on your board")
    p.add_argument("csv", metavar="LATENCIES.csv", help="columns: file,target,latency_ms,engine")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument("--tflm-dir", metavar="DIR", help="CMSIS-NN TFLite Micro tree (default: $TINYFRONT_TFLM_DIR)")
    p.add_argument(
        "--out", default="calibrations", metavar="DIR", help="folder for <target>.json (default: ./calibrations)"
    )
    p.set_defaults(run=run)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, checked: the four columns, a positive latency, an existing file."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path.name} lacks the column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise ConfigError(f"{path.name} has no rows")
    for i, row in enumerate(rows, start=2):
        try:
            ms = float(row["latency_ms"])
        except ValueError:
            raise ConfigError(
                f"latency_ms must be a number, got '{row['latency_ms']}' ({path.name} line {i})"
            ) from None
        if not ms > 0:
            raise ConfigError(f"latency_ms must be > 0, got {ms:g} ({path.name} line {i})")
        if not (path.parent / row["file"]).is_file():
            raise ConfigError(f"model file not found: {row['file']} ({path.name} line {i})")
    return rows


def run(args: argparse.Namespace) -> int:
    from firmware_export.device import check_tree
    from search import cpi_model as cm
    from search.device_runner import run_on_device
    from search.targets import DEFAULT_TARGETS_FILE, load_targets
    from search.tflite_graph import parse_tflite

    path = Path(args.csv)
    rows = read_rows(path)
    targets = load_targets(args.targets)
    by_target: dict[str, list[cm.Sample]] = {}
    for row in rows:
        if row["target"] not in targets:
            raise ConfigError(f"unknown target '{row['target']}'; known targets: {', '.join(sorted(targets))}")
        target = targets[row["target"]]
        runner = cm.RUNNER_FOR_CORE.get(target.core)
        if runner is None:
            raise ConfigError(f"target '{target.name}' has core '{target.core}', which no device runner emulates")
        model = (path.parent / row["file"]).read_bytes()
        m = run_on_device(model, runner, tree=args.tflm_dir)
        if m.instructions is None:
            raise ConfigError(f"{row['file']} did not run on the {runner} runner: {m.error}")
        published = cm.PublishedRow(
            row["file"], row["file"], 0, target.core, target.name, target.clock_mhz, row["engine"],
            float(row["latency_ms"]), f"user CSV {path.name}",
        )  # fmt: skip
        by_target.setdefault(target.name, []).append(
            cm.Sample(published, m.instructions, parse_tflite(model).weight_bytes)
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for name, samples in sorted(by_target.items()):
        fit = cm.fit(samples, flash_term=False)
        loo = [abs(math.exp(r) - 1) * 100 for r in fit.loo_log_residuals]
        data = {
            "name": f"{name} (tinyfront calibrate {path.name})",
            "target": name,
            "core": samples[0].row.core,
            "clock_mhz": samples[0].row.clock_mhz,
            "tree": str(check_tree(args.tflm_dir)),
            "runner": f"tinyfront device runner {samples[0].row.core}",
            "rows": [f"{s.row.model} {s.row.latency_ms:g} ms ({s.row.engine})" for s in samples],
            "fit": fit.to_dict(),
            "loo_median_error_pct": median(loo) if loo else None,
        }
        (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        cls = samples[0].row.cpi_class
        table.append((
            name, len(samples), f"{fit.cpi[cls]:.3f}", f"{median(loo):.1f}%" if loo else "n/a (1 row)",
            f"{max(loo):.1f}%" if loo else "n/a", f"x/÷ {math.exp(fit.log_halfwidth):.3f}" if loo else "n/a",
            str(out / f"{name}.json"),
        ))  # fmt: skip
    print(format_table(("target", "rows", "CPI", "LOO median", "LOO max", "90% interval", "written"), table))
    if any(len(s) < 9 for s in by_target.values()):
        print("note: below 9 rows the 90% interval is the largest leave-one-out error (too few rows for a quantile)")
    targets_file = Path(args.targets) if args.targets else DEFAULT_TARGETS_FILE
    for name in sorted(by_target):
        print(paste_line(targets_file, name, out / f"{name}.json"))
    return 0


def paste_line(targets_file: Path, target: str, calibration: Path) -> str:
    """The line that makes ``target`` use ``calibration`` (relative to the targets file when below it)."""
    folder = targets_file.resolve().parent
    full = calibration.resolve()
    shown = os.path.relpath(full, folder) if full.is_relative_to(folder) else str(full)
    return f"to use it, add to [targets.{target}] in {targets_file}: latency_calibration = {json.dumps(shown)}"
