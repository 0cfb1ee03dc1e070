"""Finding the native tools and running them in a child process with a timeout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from firmware_export.device._errors import DeviceError

#: Environment variable naming a TFLite Micro tree (create_tflm_tree.py output).
TFLM_DIR_ENV = "TINYFRONT_TFLM_DIR"


def need_tool(name: str, why: str) -> str:
    """Absolute path of ``name`` on PATH, or a DeviceError saying what needs it."""
    path = shutil.which(name)
    if path is None:
        raise DeviceError(f"{name} is not on PATH; it is needed {why}")
    return path


def check_tree(tree: Path | str | None) -> Path:
    """``tree`` (or $TINYFRONT_TFLM_DIR) as a resolved TFLite Micro tree, or a DeviceError."""
    if tree is None or str(tree) == "":
        tree = os.environ.get(TFLM_DIR_ENV) or None
    if tree is None:
        raise DeviceError(f"no TFLite Micro tree given: pass --tflm-dir DIR or set {TFLM_DIR_ENV}")
    path = Path(tree).expanduser().resolve()
    if not (path / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise DeviceError(
            f"{path} is not a TFLite Micro tree (tensorflow/lite/micro/micro_interpreter.h is missing); "
            "make one with TFLM's create_tflm_tree.py"
        )
    return path


def is_cmsis_nn_tree(tree: Path) -> bool:
    return (tree / "third_party" / "cmsis_nn" / "Include").is_dir()


@dataclass(frozen=True)
class Completed:
    """A finished child process: its exit status and its output (stdout then stderr)."""

    args: tuple[str, ...]
    status: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` non-empty output lines, joined on one line with " | "."""
        text = [line.strip() for line in (self.stdout + "\n" + self.stderr).splitlines() if line.strip()]
        return " | ".join(text[-lines:])


def run(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float, what: str, env: dict[str, str] | None = None
) -> Completed:
    """Run ``args`` in a child process; a missing program or a timeout comes back as a DeviceError."""
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,  # its own process group: a timeout stops the compilers make started too
        )
    except OSError as exc:
        raise DeviceError(f"{what} could not start: {exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeviceError(f"{what} did not finish within {timeout:g} s (stopped): a hang or a too-slow build") from None
    return Completed(tuple(args), proc.returncode, stdout, stderr)


def run_ok(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float, what: str, env: dict[str, str] | None = None
) -> Completed:
    """:func:`run`, and a DeviceError with the end of the output when the status is not 0."""
    done = run(args, cwd=cwd, timeout=timeout, what=what, env=env)
    if done.status != 0:
        raise DeviceError(f"{what} failed (exit status {done.status}): {done.tail()}")
    return done
