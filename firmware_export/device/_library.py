"""``libtflm.a`` built once per (tree, core, flags, kernels) into a cache folder keyed by a hash.

The library is built by the bundle's own Makefile template (its ``lib`` goal), so the flags the
device checks use are the flags a user's build uses. A file lock keeps two processes (two pytest
workers, the CLI and a test) from building the same library at once; the second one waits and
reuses the first one's result.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from firmware_export._templates import render, template_text
from firmware_export.device._boards import Board
from firmware_export.device._errors import DeviceError
from firmware_export.device._tools import check_tree, is_cmsis_nn_tree, need_tool, run_ok

#: Kernel source stems (tensorflow/lite/micro/kernels[/cmsis_nn]/<stem>.cc) of each builtin operator
#: whose file is not simply its lower-case name.
_OP_KERNELS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("conv",),
    "DEPTHWISE_CONV_2D": ("depthwise_conv",),
    "AVERAGE_POOL_2D": ("pooling",),
    "MAX_POOL_2D": ("pooling",),
    "RELU": ("activations",),
    "RELU6": ("activations",),
    "RELU_N1_TO_1": ("activations",),
    "MEAN": ("reduce",),
    "SUM": ("reduce",),
    "REDUCE_MAX": ("reduce",),
    "MAXIMUM": ("maximum_minimum",),
    "MINIMUM": ("maximum_minimum",),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("unidirectional_sequence_lstm", "lstm_eval"),
    "BATCH_MATMUL": ("batch_matmul",),
    "ADD": ("add",),
}

#: Seconds a library build may take before it is stopped (2 idle cores, the whole tree: ~5 min; a
#: loaded machine takes many times longer). $TINYFRONT_BUILD_TIMEOUT overrides it.
LIBRARY_TIMEOUT_S = float(os.environ.get("TINYFRONT_BUILD_TIMEOUT", "3600"))


def kernels_for_ops(ops: Iterable[str]) -> list[str]:
    """Kernel source stems for the builtin operator names ``ops`` (e.g. ``CONV_2D`` -> ``conv``)."""
    stems: set[str] = set()
    for op in ops:
        stems.update(_OP_KERNELS.get(op, (op.lower(),)))
    return sorted(stems)


def library_makefile(board: Board | None) -> str:
    """The bundle Makefile rendered for ``board``'s core (None: the host)."""
    from search import __version__

    core = board.core if board is not None else "host"
    return render(
        "tflm/Makefile",
        {
            "version": __version__,
            "target_name": f"libtflm for {core}",
            "core": core,
            "default_platform": "cortex-m" if board is not None else "host",
            "cpu": board.cpu if board is not None else "cortex-m4",
            "float_flags": board.float_flags if board is not None else "",
            "tflm_target_arch": board.cpu if board is not None else "cortex-m4",
        },
    )


def _tree_stamp(tree: Path) -> str:
    """What identifies a tree's content cheaply: its path and the newest mtime of its top folders."""
    stamps = [str(tree)]
    for sub in ("tensorflow/lite/micro", "tensorflow/lite/micro/kernels", "third_party"):
        path = tree / sub
        if path.exists():
            stamps.append(f"{sub}:{path.stat().st_mtime_ns}")
    return "|".join(stamps)


def library_key(tree: Path, board: Board | None, kernels: Iterable[str] | None, opt: str) -> str:
    """Hash of everything the library depends on: tree, flags, kernel filter, Makefile template."""
    parts = [
        _tree_stamp(tree),
        board.name if board is not None else "host",
        board.float_flags if board is not None else "",
        opt,
        " ".join(sorted(kernels)) if kernels else "*",
        hashlib.sha256(template_text("tflm/Makefile").encode()).hexdigest(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DeviceError(f"another process holds {path} for more than {timeout_s:g} s") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_library(
    tree: Path | str | None,
    board: Board | None,
    cache_dir: Path,
    *,
    kernels: Iterable[str] | None = None,
    opt: str = "-O2",
    jobs: int = 2,
    timeout_s: float = LIBRARY_TIMEOUT_S,
) -> Path:
    """``libtflm.a`` of ``tree`` for ``board``'s core (None: the host), built once and cached.

    ``kernels``: compile only these kernel stems (see :func:`kernels_for_ops`); None: all of them.
    The result lives in ``cache_dir/<hash>/libtflm.a``; a later call with the same inputs returns
    it without building.
    """
    root = check_tree(tree)
    if board is not None:
        if not is_cmsis_nn_tree(root):
            raise DeviceError(f"{root} has no third_party/cmsis_nn: Cortex-M builds need a CMSIS-NN tree")
        need_tool("arm-none-eabi-gcc", "to cross-compile TFLite Micro for Cortex-M")
    need_tool("make", "to build TFLite Micro")
    kernel_list = sorted(set(kernels)) if kernels else []
    key = library_key(root, board, kernel_list, opt)
    out = Path(cache_dir) / key
    lib = out / "libtflm.a"
    with _locked(Path(cache_dir) / f"{key}.lock", timeout_s):
        if lib.is_file():
            return lib
        out.mkdir(parents=True, exist_ok=True)
        (out / "Makefile").write_text(library_makefile(board))
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        args = [
            *nice,
            "make",
            f"-j{jobs}",
            "-f",
            "Makefile",
            "lib",
            f"TFLM_DIR={root}",
            f"PLATFORM={'cortex-m' if board is not None else 'host'}",
            f"BUILD_DIR={out}",
            f"OPT={opt}",
            f"TFLM_KERNELS={' '.join(kernel_list)}",
            "TFLM_PCH=1",  # precompiled headers: same objects, about 3x faster (see the Makefile)
        ]
        what = f"building libtflm.a for {board.core if board else 'the host'} from {root}"
        start = time.monotonic()
        run_ok(args, cwd=out, timeout=timeout_s, what=what, env={"MAKEFLAGS": ""})
        (out / "build_seconds.txt").write_text(f"{time.monotonic() - start:.1f}\n")
        if not lib.is_file():
            raise DeviceError(f"{what}: make succeeded but {lib} is missing")
        return lib


def default_cache_dir() -> Path:
    """$TINYFRONT_BUILD_CACHE, else ``~/.cache/tinyfront/tflm``."""
    env = os.environ.get("TINYFRONT_BUILD_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tinyfront" / "tflm"
