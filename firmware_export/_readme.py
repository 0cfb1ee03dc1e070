"""Text blocks shared by the bundle READMEs: the figures table and what was checked where."""

from __future__ import annotations

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


def checks_text(arena_size: int, tflm_version: str) -> str:
    """What tinyfront verified for a TFLite Micro bundle and what it could not."""
    return "\n".join(
        [
            "Checked when this bundle was made:",
            f"* the real TFLite Micro interpreter (tflite-micro {tflm_version} Python package, reference kernels)",
            f"  allocated `model.tflite` with `kTensorArenaSize` = {arena_size} bytes and produced the output",
            "  stored in `test_input.cc` for the stored input;",
            "* `model_data.cc` holds exactly the bytes of `model.tflite` (written from the same buffer).",
            "",
            "Checked by tinyfront's test-suite on bundles of its own test models (not on this bundle):",
            "`model_data.cc`, `test_input.cc` and `model_settings.h` compile with the host `g++` and with",
            "`arm-none-eabi-g++ -mcpu=cortex-m33 -mthumb`; the C array parses back to the .tflite bytes; the",
            "op resolver lists exactly the model's operators (also for the MLPerf Tiny reference models).",
            "",
            "Not checked: `main.cc`, `model_op_resolver.h`, `Makefile` and `CMakeLists.txt` were not compiled",
            "or linked, because no TensorFlow Lite Micro source tree is available where tinyfront ran; they",
            "follow TFLM's examples and its `project_generation/Makefile`. Nothing was flashed or run on a",
            "board: latency on the board is an estimate until you measure it with `tinyfront_time_us()`.",
        ]
    )
