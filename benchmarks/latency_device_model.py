"""Old MAC-model vs new device-instruction CPI model on the published MCU latencies, with interval coverage.

Run: ``python benchmarks/latency_device_model.py [--tree DIR] [--cores cortex-m4,cortex-m33] [--write]``.
Runs every MLPerf Tiny model of ``search/calibration/mcu_latency.csv`` on the device runner of
each core (``../shared/tflm/cmsis_nn`` or ``--tree``; instruction counts are MEASURED in QEMU),
fits the CPI model (``search/cpi_model.py``) to the current-CMSIS-NN rows and prints per row:
model, board, published ms, the old MAC-model estimate (``search/latency_model.py``, leave-one-out),
the new estimate (leave-one-out: fitted without that row) with its 90 % interval, and the errors;
then median and max absolute error per core class, old and new side by side, and how many held-out
rows fall inside their stated 90 % interval (each row's interval computed without that row).
The per-class flash term is kept only when it lowers the leave-one-out median error (a choice made
on the same rows, so slightly optimistic). ``--write`` stores the fit, the counts and the tree in
``search/calibration/cpi_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import warnings
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.table import format_table  # noqa: E402
from search import cpi_model as cm  # noqa: E402
from search import latency_model as lm  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def tree_commit(tree: Path) -> str:
    """The tflite-micro commit a tree was made from, as its README beside it states (else 'unknown')."""
    for readme in (tree / "README.md", tree.parent / "README.md"):
        if readme.is_file():
            match = re.search(r"commit `([0-9a-f]{40})`", readme.read_text())
            if match:
                return match.group(1)
    return "unknown"


def measure(tree: Path, cores: list[str], files: list[str]) -> dict[str, dict[str, dict[str, object]]]:
    from search.device_runner import run_on_device
    from search.tflite_graph import parse_tflite

    counts: dict[str, dict[str, dict[str, object]]] = {}
    for core in cores:
        for file in files:
            model = (SHARED / file).read_bytes()
            start = time.monotonic()
            m = run_on_device(model, core, tree=tree)
            seconds = time.monotonic() - start
            error = f"  ERROR {m.error}" if m.error else ""
            print(f"  {core:11s} {Path(file).name:32s} instructions {m.instructions!s:>11s}  arena_min {m.arena_min}  "
                  f"stack {m.stack_peak}  ({seconds:.1f} s){error}", flush=True)  # fmt: skip
            counts.setdefault(core, {})[file] = {
                "instructions": m.instructions,
                "arena_min": m.arena_min,
                "stack_peak": m.stack_peak,
                "weight_bytes": parse_tflite(model).weight_bytes,
                "ops": [list(p) for p in m.op_instructions],
            }
    return counts


def samples_for(rows: list[cm.PublishedRow], counts: dict[str, dict[str, dict[str, object]]]) -> list[cm.Sample]:
    out = []
    for r in rows:
        c = counts.get(cm.RUNNER_FOR_CORE.get(r.core, ""), {}).get(r.model_file)
        if r.fitted and c and c["instructions"]:
            out.append(cm.Sample(r, int(c["instructions"]), int(c["weight_bytes"])))  # type: ignore[call-overload]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=SHARED / "tflm" / "cmsis_nn")
    parser.add_argument("--cores", default="cortex-m4,cortex-m33,cortex-m55")
    parser.add_argument("--counts", type=Path, help="reuse counts from a cpi_fit.json instead of running QEMU")
    parser.add_argument("--write", action="store_true", help="store the fit in search/calibration/cpi_fit.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = cm.published_rows()
    files = sorted({r.model_file for r in rows if r.fitted})
    if args.counts:
        counts = json.loads(args.counts.read_text())["counts"]
    else:
        print(f"instruction counts on the device runner (QEMU -icount shift=0, {args.tree}):")
        counts = measure(args.tree, args.cores.split(","), files)
    samples = samples_for(rows, counts)
    variants = {flash: cm.fit(samples, flash) for flash in (False, True)}
    loo = {flash: cm.loo_predictions(samples, flash) for flash in (False, True)}

    def loo_median(flash: bool) -> float:
        return median(abs(s.cycles / p - 1) for s, p in zip(samples, loo[flash], strict=True) if p)

    use_flash = loo_median(True) < loo_median(False)
    fit = variants[use_flash]
    with_, without = 100 * loo_median(True), 100 * loo_median(False)
    flash = {k: round(v, 3) for k, v in fit.flash_cycles_per_byte.items()}
    cpi = {k: round(v, 3) for k, v in fit.cpi.items()}
    print(f"\nfit on {len(samples)} rows ({', '.join(cm.FITTED_ENGINES)}); CPI {cpi}; flash term "
          f"{flash} cycles/weight byte (chosen: {'with' if use_flash else 'without'} it; "
          f"leave-one-out median error {with_:.1f}% with, {without:.1f}% without)")  # fmt: skip
    print(f"90% interval: x/÷ {math.exp(fit.log_halfwidth):.3f} (split-conformal on {len(fit.loo_log_residuals)} "
          "leave-one-out log residuals)\n")  # fmt: skip

    # Old model: its own leave-one-out estimates of the same rows (stored coefficients for the others).
    old_rows = lm.calibration_rows(cm.PUBLISHED_CSV)
    old_loo = {(r.model, r.board, r.engine): est for r, est, _ in lm.leave_one_out_errors(old_rows, SHARED)}
    _, graphs = lm.fit_coefficients(old_rows, SHARED)
    old_in = {(r.model, r.board, r.engine): est for r, est, _ in lm.row_errors(old_rows, lm.COEFFICIENTS, graphs)}

    new_loo = dict(zip([id(s) for s in samples], loo[use_flash], strict=True))
    table = []
    per_class: dict[str, dict[str, list[float]]] = {}
    covered = total = 0
    for r in rows:
        key = (r.model, r.board, r.engine)
        s = next((s for s in samples if s.row is r), None)
        old = old_loo.get(key) if r.engine in cm.FITTED_ENGINES or r.engine == "tflm+cmsis-nn" else None
        old = old if old is not None else old_in.get(key)
        new = inside = None
        if s is not None:
            pred = new_loo[id(s)]
            if pred is not None:
                new = pred / (r.clock_mhz * 1000.0)
                rest = [t for t in samples if t is not s]
                h = cm.fit(rest, use_flash).log_halfwidth  # the interval stated without this row
                inside = abs(math.log(r.latency_ms / new)) <= h
                covered += inside
                total += 1
                bucket = per_class.setdefault(r.cpi_class, {"old": [], "new": []})
                bucket["new"].append(abs(new / r.latency_ms - 1) * 100)
                if old is not None:
                    bucket["old"].append(abs(old / r.latency_ms - 1) * 100)
        table.append((
            r.model, r.board, r.engine, f"{r.latency_ms:g}",
            "n/a" if old is None else f"{old:.3g}", "n/a" if old is None else f"{100 * (old / r.latency_ms - 1):+.1f}%",
            "n/a" if new is None else f"{new:.3g}", "n/a" if new is None else f"{100 * (new / r.latency_ms - 1):+.1f}%",
            "" if inside is None else ("yes" if inside else "NO"),
            "fitted (LOO)" if s is not None else "not fitted",
        ))  # fmt: skip
    print(format_table(
        ("model", "board", "engine", "published ms", "old est", "old err", "new est", "new err", "in 90%", "row"),
        table,
    ))  # fmt: skip
    print("\nold = MAC model (search/latency_model.py), leave-one-out on its fitted rows, stored fit elsewhere;")
    print("new = measured instructions x fitted CPI (+ flash term), leave-one-out. Both are ESTIMATES.\n")
    summary = [
        (cls, len(v["new"]), f"{median(v['old']):.1f}%" if v["old"] else "n/a",
         f"{max(v['old']):.1f}%" if v["old"] else "n/a", f"{median(v['new']):.1f}%", f"{max(v['new']):.1f}%")
        for cls, v in sorted(per_class.items())
    ]  # fmt: skip
    print(format_table(("class", "rows", "old median", "old max", "new median", "new max"), summary))
    print(f"\ncoverage of the stated 90% intervals on held-out rows: {covered}/{total}")
    if args.write:
        from firmware_export.device.runner import RUNNER_OPT

        data = {
            "name": "cpi_fit (published MLPerf Tiny rows)",
            "tree": tree_commit(args.tree),
            "runner": f"tinyfront device runner (QEMU -icount shift=0), TFLM + CMSIS-NN {RUNNER_OPT}",
            "fitted_engines": list(cm.FITTED_ENGINES),
            "rows": [f"{s.row.model} on {s.row.board} ({s.row.engine})" for s in samples],
            "fit": fit.to_dict(),
            "counts": counts,
        }
        cm.FIT_JSON.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {cm.FIT_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
