"""``export --build``: build a bundle's files for its target's core, run the image in QEMU, keep the proof.

The image must allocate with exactly ``kTensorArenaSize`` and print the output bytes the
``tflite-micro`` Python interpreter gave (integer outputs: exactly; float32: main.cc's relative
tolerance). Only then are the prebuilt ``libtinyfront_model.a`` and the QEMU image returned, with
a :class:`Verification` the README and metadata.json quote.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.device._boards import STARTUP_FILES, Board, board_for_core
from firmware_export.device._errors import DeviceError
from firmware_export.device._library import build_library, default_cache_dir, kernels_for_ops
from firmware_export.device._run import DeviceRun, build_bundle, run_in_qemu
from firmware_export.device._tools import check_tree, is_cmsis_nn_tree, need_tool, run_ok

FLOAT_TOLERANCE = 1e-4  # main.cc's relative tolerance for float32 outputs


@dataclass(frozen=True)
class Verification:
    """What ``export --build`` ran and saw."""

    board: str
    core: str
    compiler_flags: str
    tflm_tree: str
    arena_size: int
    arena_used: int
    output: str  # "bit-exact" or "within 1e-4 relative (max ...)"
    emulated_instructions_us: int | None
    image: str
    library: str

    def sentence(self) -> str:
        return f"built and verified: {self.output} on {self.board} (QEMU, {self.core}, CMSIS-NN)"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.sentence(), **asdict(self)}


def compare_output(run: DeviceRun, expected: bytes, dtype: str) -> str:
    """ "bit-exact" or the float tolerance met; a DeviceError when the run's output differs."""
    if run.output is None or len(run.output) != len(expected):
        raise DeviceError(f"the image on {run.where} printed no complete output: {run.reason or run.text[-300:]}")
    if run.output == expected:
        return "bit-exact"
    if dtype != "float32":
        raise DeviceError(f"the image's {dtype} output on {run.where} differs from the Python interpreter's")
    got, want = np.frombuffer(run.output, np.float32), np.frombuffer(expected, np.float32)
    rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))
    if not rel <= FLOAT_TOLERANCE:
        raise DeviceError(
            f"the image's float output on {run.where} differs by {rel:.2e} (tolerance {FLOAT_TOLERANCE:g})"
        )
    return f"within {FLOAT_TOLERANCE:g} relative (max {rel:.1e})"


def build_and_verify(
    files: dict[str, bytes],
    core: str,
    ops: list[str],
    expected_output: bytes,
    output_dtype: str,
    arena_size: int,
    *,
    tree: Path | str | None,
    cache_dir: Path | None = None,
    kernels: tuple[str, ...] | None = None,
) -> tuple[Verification, dict[str, bytes]]:
    """Build ``files`` (a TFLM bundle) for ``core``, run it in QEMU, return the proof and the prebuilt files.

    ``kernels``: the kernel stems libtflm.a is compiled with (None: the model's operators only).

    The returned files (zip names): ``prebuilt/<core>/libtinyfront_model.a``, the QEMU image
    ``prebuilt/<core>/tinyfront_model_<board>.elf`` and the start-up code and linker script it
    was linked with under ``qemu/``.
    """
    board = board_for_core(core)
    root = check_tree(tree)
    if not is_cmsis_nn_tree(root):
        raise DeviceError(f"{root} is not a CMSIS-NN tree (no third_party/cmsis_nn): --build needs one for Cortex-M")
    need_tool("arm-none-eabi-gcc", "to cross-compile the bundle (--build)")
    need_tool("qemu-system-arm", "to verify the image before the bundle is written (--build)")
    if kernels is not None and not set(kernels_for_ops(ops)) <= set(kernels):
        raise DeviceError(f"the kernels {sorted(kernels)} miss some of the model's operators {ops}")
    lib = build_library(root, board, cache_dir or default_cache_dir(), kernels=kernels or kernels_for_ops(ops))
    with tempfile.TemporaryDirectory(prefix="tinyfront_build_") as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        for name, body in files.items():
            (folder / name).write_bytes(body)
        image = build_bundle(folder, board, lib, tree=root, system="make")
        run = run_in_qemu(image, board)
        if run.arena_size != arena_size:
            raise DeviceError(f"the image ran with a {run.arena_size} byte arena, kTensorArenaSize is {arena_size}")
        if run.status != 0 and run.output is None:
            raise DeviceError(f"the image did not pass on {board.name}: {run.reason}")
        verdict = compare_output(run, expected_output, output_dtype)
        if not run.passed:
            raise DeviceError(f"the image did not pass on {board.name}: {run.reason}")
        model_lib = _model_library(folder, board, lib, root, image.parent)
        prefix = f"prebuilt/{core}"
        out = {
            f"{prefix}/libtinyfront_model.a": model_lib.read_bytes(),
            f"{prefix}/tinyfront_model_{board.name}.elf": image.read_bytes(),
        }
        for name in (*STARTUP_FILES, board.linker_script):
            out[f"qemu/{name}"] = (folder / "qemu" / name).read_bytes()
    verification = Verification(
        board=board.name,
        core=core,
        compiler_flags=f"-mcpu={board.cpu} -mthumb {board.float_flags} -O2",
        tflm_tree=str(root),
        arena_size=arena_size,
        arena_used=int(run.arena_used or 0),
        output=verdict,
        emulated_instructions_us=run.time_us,
        image=f"{prefix}/tinyfront_model_{board.name}.elf",
        library=f"{prefix}/libtinyfront_model.a",
    )
    return verification, out


def _model_library(folder: Path, board: Board, lib: Path, root: Path, build_dir: Path) -> Path:
    args = [
        "make",
        "model-lib",
        f"TFLM_DIR={root}",
        f"TFLM_LIB={lib}",
        f"BUILD_DIR={build_dir}",
        "PLATFORM=cortex-m",
        f"CPU={board.cpu}",
        f"FLOAT_FLAGS={board.float_flags}",
    ]
    run_ok(args, cwd=folder, timeout=600, what="archiving libtinyfront_model.a", env={"MAKEFLAGS": ""})
    path = build_dir / "libtinyfront_model.a"
    if not path.is_file():
        raise DeviceError(f"make model-lib succeeded but {path} is missing")
    return path
