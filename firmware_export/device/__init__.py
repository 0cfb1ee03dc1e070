"""Build TFLite Micro bundles against a real TFLM tree and run them on the host and in QEMU.

``build_library`` compiles ``libtflm.a`` once per (tree, core, flags) into a cache;
``build_bundle`` builds a bundle's example program with the bundle's own Makefile or CMake files;
``run_in_qemu`` / ``run_host`` run it in a child process with a timeout and parse what it printed.
Start-up code and one linker script per QEMU board ship in ``data/``.
"""

from __future__ import annotations

from firmware_export.device._boards import BOARDS, Board, board_for_core, copy_device_files, get_board
from firmware_export.device._errors import DeviceError
from firmware_export.device._library import build_library, default_cache_dir, kernels_for_ops
from firmware_export.device._run import DeviceRun, build_bundle, parse_run, qemu_command, run_host, run_in_qemu
from firmware_export.device._tools import TFLM_DIR_ENV, check_tree
from firmware_export.device._verify import Verification, build_and_verify

__all__ = [
    "BOARDS",
    "TFLM_DIR_ENV",
    "Board",
    "DeviceError",
    "DeviceRun",
    "Verification",
    "board_for_core",
    "build_and_verify",
    "build_bundle",
    "build_library",
    "check_tree",
    "copy_device_files",
    "default_cache_dir",
    "get_board",
    "kernels_for_ops",
    "parse_run",
    "qemu_command",
    "run_host",
    "run_in_qemu",
]
