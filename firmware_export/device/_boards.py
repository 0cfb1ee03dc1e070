"""The QEMU boards tinyfront's device checks run on, one per Cortex-M core it ships flags for."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from firmware_export._targets import _FLOAT_FLAGS
from firmware_export.device._errors import DeviceError


@dataclass(frozen=True)
class Board:
    """A ``qemu-system-arm -M <name> -cpu <cpu>`` board and the GCC flags of its core."""

    name: str
    core: str
    description: str

    @property
    def cpu(self) -> str:
        return self.core

    @property
    def float_flags(self) -> str:
        return _FLOAT_FLAGS[self.core]

    @property
    def linker_script(self) -> str:
        return f"{self.name}.ld"


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board("mps2-an386", "cortex-m4", "Arm MPS2 AN386, Cortex-M4 with FPU (DSP extension)"),
        Board("mps2-an500", "cortex-m7", "Arm MPS2 AN500, Cortex-M7 with double-precision FPU"),
        Board("mps2-an505", "cortex-m33", "Arm MPS2 AN505 (SSE-200), Cortex-M33 with FPU and DSP"),
        Board("mps3-an547", "cortex-m55", "Arm MPS3 AN547 (SSE-300), Cortex-M55 with Helium (MVE)"),
    )
}

#: Files of the start-up code every image links (besides the board's linker script).
STARTUP_FILES: tuple[str, ...] = ("tinyfront_startup.c", "tinyfront_sections.ld")


def board_for_core(core: str) -> Board:
    """The QEMU board that emulates ``core``; cores none of them emulate are refused with the list."""
    for board in BOARDS.values():
        if board.core == core:
            return board
    cores = ", ".join(sorted(b.core for b in BOARDS.values()))
    raise DeviceError(f"no QEMU board emulates core '{core}'; tinyfront runs images for: {cores}")


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise DeviceError(f"unknown QEMU board '{name}'; expected one of: {', '.join(BOARDS)}") from None


def copy_device_files(board: Board, dest: Path) -> Path:
    """Copy the start-up code and ``board``'s linker script into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    data = resources.files("firmware_export.device").joinpath("data")
    for name in (*STARTUP_FILES, board.linker_script):
        (dest / name).write_bytes(data.joinpath(name).read_bytes())
    return dest
