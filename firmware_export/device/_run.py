"""Build a bundle's example program (its Makefile or its CMake files) and run it on the host or in QEMU.

What the program prints (main.cc) is parsed into a :class:`DeviceRun`: the verdict line
``tinyfront check: PASS``, the arena used, the inference time and the raw output bytes (printed
as hex, so they can be compared exactly with the Python interpreter's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from firmware_export.device._boards import Board, copy_device_files
from firmware_export.device._errors import DeviceError
from firmware_export.device._tools import check_tree, need_tool, run, run_ok

#: Seconds a bundle build may take (the library is prebuilt: a few files and a link).
BUILD_TIMEOUT_S = 600.0
#: Seconds a run may take; the largest MLPerf Tiny model takes a few seconds in QEMU.
RUN_TIMEOUT_S = 300.0

_ARENA = re.compile(r"arena: (\d+) of (\d+) bytes used")
_HEX = re.compile(r"output hex (\d+): ([0-9a-f]*)")
_TIME = re.compile(r"inference time: (\d+) us")
_CHECK = re.compile(r"tinyfront check: (PASS|FAIL)")
_FAULT = re.compile(r"tinyfront fault: (\w+)")


@dataclass(frozen=True)
class DeviceRun:
    """One run of a bundle's example program: where, its exit status and what it printed."""

    where: str  # "host" or the QEMU board's name
    status: int
    text: str
    arena_used: int | None
    arena_size: int | None
    output: bytes | None
    time_us: int | None

    @property
    def passed(self) -> bool:
        """main.cc's own verdict: status 0 and ``tinyfront check: PASS``."""
        return self.status == 0 and _CHECK.search(self.text) is not None and "check: PASS" in self.text

    @property
    def reason(self) -> str | None:
        """Why the run did not pass (None when it passed)."""
        if self.passed:
            return None
        fault = _FAULT.search(self.text)
        if fault:
            return f"the program crashed on {self.where} ({fault.group(1)})"
        tail = " | ".join(self.text.strip().splitlines()[-4:])
        return f"the program on {self.where} ended with status {self.status}: {tail}"


def parse_run(where: str, status: int, text: str) -> DeviceRun:
    """A :class:`DeviceRun` from what main.cc printed."""
    arena = _ARENA.search(text)
    chunks = sorted((int(m.group(1)), m.group(2)) for m in _HEX.finditer(text))
    output: bytes | None = None
    if chunks:
        raw = b"".join(bytes.fromhex(h) for _, h in chunks)
        offsets = [o for o, _ in chunks]
        output = raw if offsets == list(range(0, 64 * len(chunks), 64)) else None
    time = _TIME.search(text)
    return DeviceRun(
        where=where,
        status=status,
        text=text,
        arena_used=int(arena.group(1)) if arena else None,
        arena_size=int(arena.group(2)) if arena else None,
        output=output,
        time_us=int(time.group(1)) if time else None,
    )


def build_bundle(
    bundle_dir: Path,
    board: Board | None,
    lib: Path,
    *,
    tree: Path | str | None,
    system: str = "make",
    jobs: int = 2,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> Path:
    """Build the example program of the bundle in ``bundle_dir`` against the prebuilt ``lib``.

    ``board`` None builds the host executable; otherwise a Cortex-M image for that QEMU board, with
    tinyfront's start-up code and the board's linker script (copied into ``bundle_dir/qemu``).
    ``system`` is ``make`` (the bundle's Makefile) or ``cmake`` (its CMakeLists.txt). Build folders:
    ``build/<make|cmake>-<host|board>``. Returns the image (ELF) or executable.
    """
    root = check_tree(tree)
    bundle = Path(bundle_dir).resolve()
    if system not in ("make", "cmake"):
        raise DeviceError(f"build system must be make or cmake, got '{system}'")
    need_tool(system, "to build the bundle")
    where = board.name if board is not None else "host"
    build = bundle / "build" / f"{system}-{where}"
    what = f"building the bundle in {bundle} with {system} for {where}"
    ld = startup = None
    if board is not None:
        need_tool("arm-none-eabi-gcc", "to cross-compile the bundle for Cortex-M")
        qemu = copy_device_files(board, bundle / "qemu")
        ld, startup = qemu / board.linker_script, qemu / "tinyfront_startup.c"
    if system == "make":
        args = ["make", f"-j{jobs}", f"TFLM_DIR={root}", f"TFLM_LIB={Path(lib).resolve()}", f"BUILD_DIR={build}"]
        if board is None:
            args.append("PLATFORM=host")
        else:
            args += [
                "PLATFORM=cortex-m",
                f"CPU={board.cpu}",
                f"FLOAT_FLAGS={board.float_flags}",
                f"LDSCRIPT={ld}",
                f"EXTRA_SRCS={startup.relative_to(bundle) if startup else ''}",
            ]
        run_ok(args, cwd=bundle, timeout=timeout_s, what=what, env={"MAKEFLAGS": ""})
        image = build / ("tinyfront_model.elf" if board is not None else "tinyfront_model")
    else:
        conf = ["cmake", "-S", str(bundle), "-B", str(build), f"-DTFLM_DIR={root}"]
        conf.append(f"-DTINYFRONT_TFLM_LIB={Path(lib).resolve()}")
        if board is None:
            conf.append("-DTINYFRONT_PLATFORM=host")
        else:
            conf += [
                "-DTINYFRONT_PLATFORM=cortex-m",
                f"-DTINYFRONT_CPU={board.cpu}",
                f"-DTINYFRONT_FLOAT_FLAGS={board.float_flags}",
                f"-DTINYFRONT_LINKER_SCRIPT={ld}",
                f"-DTINYFRONT_EXTRA_SOURCES={startup}",
            ]
        run_ok(conf, cwd=bundle, timeout=timeout_s, what=f"configuring ({what})")
        run_ok(["cmake", "--build", str(build), "-j", str(jobs)], cwd=bundle, timeout=timeout_s, what=what)
        image = build / ("tinyfront_model.elf" if board is not None else "tinyfront_model")
    if not image.is_file():
        raise DeviceError(f"{what}: the build succeeded but {image} is missing")
    return image


def run_host(executable: Path, *, timeout_s: float = RUN_TIMEOUT_S) -> DeviceRun:
    """Run a host build of the example program; a hang comes back as a DeviceError."""
    done = run([str(executable)], timeout=timeout_s, what=f"running {executable}")
    return parse_run("host", done.status, done.stdout + done.stderr)


def qemu_command(image: Path, board: Board) -> list[str]:
    """The ``qemu-system-arm`` command line that runs ``image`` on ``board`` with semihosting."""
    return [
        "qemu-system-arm",
        "-M",
        board.name,
        "-cpu",
        board.cpu,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(image),
    ]


def run_in_qemu(image: Path, board: Board, *, timeout_s: float = RUN_TIMEOUT_S) -> DeviceRun:
    """Run a Cortex-M image in ``qemu-system-arm``; a hang comes back as a DeviceError, a crash as a reason.

    ``-icount shift=0`` makes the emulated clock advance one nanosecond per instruction, so the
    printed inference time counts instructions: deterministic, not the board's latency.
    """
    need_tool("qemu-system-arm", "to run Cortex-M images")
    done = run(
        qemu_command(Path(image), board), timeout=timeout_s, what=f"running {Path(image).name} in QEMU {board.name}"
    )
    return parse_run(board.name, done.status, done.stdout + done.stderr)
