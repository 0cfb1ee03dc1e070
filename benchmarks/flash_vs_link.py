"""Estimated flash (search/flash.py) against real arm-none-eabi links of every model, per core.

Run::

    python benchmarks/flash_vs_link.py --tflm-dir ../shared/tflm/cmsis_nn --build-dir /tmp/tflm-size \\
        [--cores cortex-m4 ...] [--models DIR_OR_FILE ...] [--record]

For each model (the MLPerf Tiny models in ../shared/models/mlperf-tiny/ plus any ``--models``: .tflite
files or folders holding a ``model.tflite``) and each core, it links the model's C array, a
``MicroMutableOpResolver`` with exactly the model's registrations (the type-specific variants
:func:`search.flash.registration_keys` picks) and the interpreter (``-Os``, ``--gc-sections``,
newlib-nano), and prints: model, core, estimated flash, linked ``.text + .rodata + .data``
(Berkeley ``text + data``), the error in % of the image and of the code without the model array,
and estimated vs linked static RAM (``.data + .bss`` outside the arena); then the median and max
absolute error. ``--record`` stores the residuals in ``search/calibration/tflm_code_size.json``
(``validation``), where :func:`search.flash.code_error_pct` reads the stated error from.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.table import format_table  # noqa: E402
from search import flash  # noqa: E402
from search.flash_calibrate import (  # noqa: E402
    ARENA_BYTES,
    VARIANTS,
    build_library,
    bundle_registration_keys,
    link_bundle,
    link_program,
)
from search.tflite_graph import parse_tflite, resolver_method_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny"


def _models(extra: list[Path]) -> list[tuple[str, Path]]:
    found = [(p.stem, p) for p in sorted(MLPERF.glob("*.tflite"))] if MLPERF.is_dir() else []
    for item in extra:
        if item.is_dir():
            found += [(item.name, p) for p in sorted(item.rglob("model.tflite"))]
        else:
            found.append((item.stem, item))
    return found


def _calls(keys: tuple[str, ...]) -> list[str]:
    table = dict(VARIANTS)
    return [table.get(k) or f"{resolver_method_name(k.split(':')[0])}()" for k in keys]


def _export_bundle(model: Path, out: Path) -> Path:
    """The TFLM bundle ``tinyfront export`` writes for ``model`` (unzipped under ``out``)."""
    if not (out / "main.cc").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        archive = out.with_suffix(".zip")
        cmd = [sys.executable, "-m", "explorer.cli", "export", "--tflite", str(model), "--target", "nucleo-l4r5zi",
               "--format", "tflm", "-o", str(archive), "--force"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(out.parent / "unzipped")
        top = next((out.parent / "unzipped").iterdir())
        top.rename(out)
        (out.parent / "unzipped").rmdir()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tflm-dir", type=Path, default=REPO.parent / "shared" / "tflm" / "cmsis_nn")
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--cores", nargs="+", default=None, help="default: every calibrated core")
    parser.add_argument("--models", nargs="*", type=Path, default=[])
    parser.add_argument("--bundles", action="store_true", help="also link each model's exported bundle (main.cc)")
    parser.add_argument("--record", action="store_true", help="store the residuals in the calibration file")
    args = parser.parse_args(argv)
    cores = args.cores or sorted(flash.calibration()["cores"])
    rows = []
    residuals: dict[str, list[dict[str, object]]] = {c: [] for c in cores}
    for core in cores:
        lib = args.build_dir / f"build-{core}" / "libtflm.a"  # the calibration's library
        if not lib.is_file():
            lib = build_library(args.tflm_dir, args.build_dir, core)
        for name, path in _models(args.models):
            data = path.read_bytes()
            keys = flash.registration_keys(data)
            est = flash.flash_estimate(data, parse_tflite(data), core)
            array = flash.c_array_bytes(len(data))
            code_est, _ = flash.runtime_code_bytes(keys, core)
            work = args.build_dir / f"bench-{core}" / name
            res = link_program(lib, args.tflm_dir, work, core, _calls(keys), model=path)
            linked_code = res.flash - array
            err = 100.0 * (array + code_est - res.flash) / res.flash
            code_err = 100.0 * (code_est - linked_code) / linked_code
            ram_linked = res.data + res.bss - ARENA_BYTES
            ram_est = flash.static_ram_bytes(keys, core)
            residuals[core].append(
                {"model": name, "linked_bytes": res.flash, "estimated_bytes": array + code_est,
                 "error_pct": round(err, 2), "code_error_pct": round(code_err, 2)}
            )  # fmt: skip
            rows.append(
                (name, "probe", core, len(keys), f"{(array + code_est) / 1024:.1f}", f"{res.flash / 1024:.1f}",
                 f"{err:+.2f}", f"{code_est / 1024:.1f}", f"{linked_code / 1024:.1f}", f"{code_err:+.2f}",
                 f"{ram_est:,}", f"{ram_linked:,}", str(est["total"].error_pct))
            )  # fmt: skip
            if args.bundles:
                bundle = _export_bundle(path, args.build_dir / "bundles" / name)
                bkeys = bundle_registration_keys((bundle / "model_op_resolver.h").read_text())
                arena = int(re.search(r"kTensorArenaSize = (\d+)", (bundle / "model_settings.h").read_text()).group(1))
                bres = link_bundle(lib, args.tflm_dir, bundle, args.build_dir / f"bundle-{core}" / name, core)
                bcode, _ = flash.runtime_code_bytes(bkeys, core)
                # The bundle's test_input.cc (a float test input and expected output) is example data,
                # not runtime: left out of the compared size (and shown in the program column).
                test_data = sum(v for k, v in bres.sections.items() if k.endswith(" test_input.cc.o"))
                b_linked_code = bres.flash - array - test_data
                berr = 100.0 * (array + bcode - (bres.flash - test_data)) / (bres.flash - test_data)
                bcode_err = 100.0 * (bcode - b_linked_code) / b_linked_code
                rows.append(
                    (name, f"bundle-{test_data // 1024}K", core, len(bkeys), f"{(array + bcode) / 1024:.1f}",
                     f"{(bres.flash - test_data) / 1024:.1f}",
                     f"{berr:+.2f}", f"{bcode / 1024:.1f}", f"{b_linked_code / 1024:.1f}", f"{bcode_err:+.2f}",
                     f"{flash.static_ram_bytes(bkeys, core):,}", f"{bres.data + bres.bss - arena:,}", "")
                )  # fmt: skip
    headers = ("model", "program", "core", "ops", "est. kB", "linked kB", "err %", "est. code kB", "linked code kB",
               "code err %", "est. static RAM B", "linked static RAM B", "stated ±%")  # fmt: skip
    print(format_table(headers, rows))
    probes = [r for r in rows if r[1] == "probe"]
    errs = [abs(float(r[6])) for r in probes]
    code_errs = [abs(float(r[9])) for r in probes]
    print("\nprobe rows (the estimate's claim: model + interpreter + the model's typed registrations):")
    print(f"flash (model array + code): median |error| {statistics.median(errs):.2f} %, max {max(errs):.2f} %")
    print(
        f"code without the model array: median |error| {statistics.median(code_errs):.2f} %, max {max(code_errs):.2f} %"
    )
    bundles = [abs(float(r[6])) for r in rows if r[1] != "probe"]
    if bundles:
        print(f"bundle rows (exported main.cc, its resolver, test_input.cc's NK of example data left out): "
              f"median |error| {statistics.median(bundles):.2f} %, max {max(bundles):.2f} %")  # fmt: skip
    print("linked = arm-none-eabi-size text + data of the real image (measured); est. = search/flash.py (estimated)")
    if args.record:
        data = json.loads(flash.CALIBRATION_FILE.read_text())
        for core, items in residuals.items():
            data["cores"][core]["validation"] = items
        flash.CALIBRATION_FILE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"recorded the residuals in {flash.CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
