"""Text blocks shared by the bundle READMEs: the figures table and what was checked where."""

from __future__ import annotations

from typing import Any

from search.figures import Figure

_FIGURE_NAMES = {
    "accuracy": "accuracy of the deployed artifact",
    "keras_accuracy": "accuracy of the Keras model before conversion",
    "flash_kb": "flash",
    "sram_kb": "SRAM",
    "latency_ms": "latency",
    "arena_bytes": "tensor arena (search)",
}


def figure_rows(figures: dict[str, Figure]) -> str:
    """Markdown rows ``| name | 12.3 ms (estimated, ±15%) | method |``; a note row when there are none."""
    if not figures:
        return "| (none) | no figures: this model did not come from a tinyfront search | |"
    rows = []
    for key, fig in figures.items():
        rows.append(f"| {_FIGURE_NAMES.get(key, key)} | {fig.label()} | {fig.method} |")
    return "\n".join(rows)


def checks_text(
    arena_size: int,
    tflm_version: str,
    verification: dict[str, Any] | None = None,
    device_arena: dict[str, Any] | None = None,
) -> str:
    """What tinyfront verified for a TFLite Micro bundle and what it could not.

    ``verification``: what ``export --build`` ran (``Verification.to_dict()``), or None when this
    bundle was not built where it was made. ``device_arena``: the device runner's arena check when
    ``kTensorArenaSize`` came from it (then ``arena_size`` is the arena the host interpreter ran with).
    """
    d = device_arena
    host_arena = (
        f"`kTensorArenaSize` = {arena_size}" if d is None or d["check_arena_bytes"] == arena_size else (f"{arena_size}")
    )
    lines = [
        "Checked when this bundle was made:",
        f"* the real TFLite Micro interpreter (tflite-micro {tflm_version} Python package, reference kernels)",
        f"  allocated `model.tflite` with {host_arena} bytes and produced the output",
        "  stored in `test_input.cc` for the stored input;",
    ]
    if d is not None:
        lines += [
            f"* tinyfront's device runner ({d['runner_core']}, TFLM + CMSIS-NN {d['optimisation']}, QEMU {d['board']})",
            f"  allocated it with exactly `kTensorArenaSize` = {d['check_arena_bytes']} bytes (bisected minimum",
            f"  {d['arena_min_bytes']} B; the 64-bit host interpreter needs more for its own records);",
        ]
    lines += ["* `model_data.cc` holds exactly the bytes of `model.tflite` (written from the same buffer)."]
    if verification is not None:
        v = verification
        lines += [
            f"* **{v['status']}**: this bundle's sources were compiled with `arm-none-eabi-gcc {v['compiler_flags']}`",
            f"  against the TFLite Micro tree `{v['tflm_tree']}` (CMSIS-NN kernels), linked with tinyfront's start-up",
            f"  code and linker script (`qemu/`) into `{v['image']}`, and run in `qemu-system-arm -M {v['board']}`:",
            f"  `AllocateTensors()` succeeded with exactly {v['arena_size']} bytes ({v['arena_used']} used) and the",
            f"  raw output was {v['output']} against the Python interpreter's. `{v['library']}` (the model, its C API",
            "  and that TFLite Micro build) was archived from the same objects.",
        ]
    lines += [
        "",
        "Checked by tinyfront's test-suite (tests/test_device_build.py) on bundles of its own test models (int8,",
        "float32, int16x8, int8_qat) and of the MLPerf Tiny models, not on this bundle: they build with their",
        "Makefile and CMake files against TFLite Micro trees of commit 90b983c2, run on the host (reference",
        "kernels) with the Python interpreter's output bytes, and run in QEMU on Cortex-M4, M7, M33 and M55",
        "(CMSIS-NN) bit-exact (float32 within 1e-4) with their stated arena. Known exception: an int16x8 model",
        "whose dense layer is quantised per channel fails `AllocateTensors()` with CMSIS-NN (its",
        "FULLY_CONNECTED supports per-channel weights only for int8 input).",
        "",
    ]
    if verification is None:
        lines += [
            "Not checked for this bundle: it was exported without `--build`, so its `main.cc`, op resolver and",
            "build files were not compiled or run for this model where it was made (`tinyfront export ... --build",
            "--tflm-dir DIR` does that).",
        ]
    lines += [
        "Nothing was flashed or run on a real board: QEMU is functionally exact but does not model cycles, so",
        "latency on the board is an estimate until you measure it with `tinyfront_time_us()`.",
    ]
    return "\n".join(lines)
