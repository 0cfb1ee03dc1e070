"""Bundles for the Export page, built by ``tinyfront export`` in a child process and kept on disk.

Building a bundle loads TensorFlow Lite Micro or tf2onnx; doing it in a child process keeps the
app's own process free of TensorFlow and safe from a crash in a converter. A bundle is written to
``<workdir>/.tinyfront/exports/<study>/trial-<N>-<format>.zip`` and reused while it is newer than
the trial's ``result.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from explorer.app.state import STORAGE_ENV, check_study_name, state_dir, workdir
from explorer.app.state import artifacts_root as workdir_artifacts
from search.errors import ExportError, TinyfrontError
from search.names import trial_folder

FORMATS: dict[str, str] = {
    "tflm": "TFLite Micro (C++ sources, Makefile / CMake, for microcontrollers)",
    "onnx": "ONNX Runtime (model.onnx, Python scripts, for Linux boards)",
}
EXPORT_TIMEOUT_S = 600
#: A first ``--build`` compiles TFLite Micro for the core (minutes); later ones reuse the cached library.
BUILD_TIMEOUT_S = 3600


def bundle_path(study: str, trial: int, fmt: str, *, built: bool = False) -> Path:
    """Where the bundle of ``trial`` in format ``fmt`` is kept (``built``: the one made with ``--build``)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown bundle format '{fmt}'; expected one of: {', '.join(FORMATS)}")
    suffix = "-built" if built else ""
    return state_dir("exports", check_study_name(study)) / f"trial-{int(trial)}-{fmt}{suffix}.zip"


def build_unavailable() -> str | None:
    """Why ``export --build`` cannot run here (None: it can): the TFLM tree and the tools it needs."""
    tree = os.environ.get("TINYFRONT_TFLM_DIR", "").strip()
    if not tree:
        return "set TINYFRONT_TFLM_DIR to a TensorFlow Lite Micro tree with CMSIS-NN before starting the app"
    if not (Path(tree) / "third_party" / "cmsis_nn").is_dir():
        return f"TINYFRONT_TFLM_DIR={tree} is not a CMSIS-NN TensorFlow Lite Micro tree (no third_party/cmsis_nn)"
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed here"
    return None


def verification(path: Path) -> dict[str, Any]:
    """The ``bundle.verification`` record of a TFLite Micro bundle's metadata.json ({} when absent)."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("metadata.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    record = (meta.get("bundle") or {}).get("verification") if isinstance(meta, dict) else None
    return record if isinstance(record, dict) else {}


def build_bundle(
    storage: str,
    study: str,
    trial: int,
    fmt: str,
    artifacts_dir: str | None = None,
    *,
    artifacts_root: str | None = None,
    build: bool = False,
) -> Path:
    """The bundle's zip, built now unless an up-to-date one exists; ExportError with the reason otherwise.

    ``artifacts_dir``: the trial's recorded folder (found under the study's ``artifacts_root``, or the
    working folder's, when the project moved), whose ``result.json`` a kept bundle must be newer than.
    ``build``: ``tinyfront export --build`` (TFLite Micro only): cross-compiled for the target's core
    and verified in QEMU before the zip is written.
    """
    out = bundle_path(study, trial, fmt, built=build)
    try:
        folder = trial_folder(artifacts_dir, study, artifacts_root, workdir_artifacts()) if artifacts_dir else None
        result = folder / "result.json" if folder is not None else None
    except TinyfrontError:
        result = None  # a kept bundle is served; building one says where the folder was looked for
    if out.is_file() and (result is None or not result.exists() or out.stat().st_mtime >= result.stat().st_mtime):
        return out
    command = [sys.executable, "-m", "explorer.cli", "export", "--study", study, "--trial", str(int(trial))]
    command += ["--format", fmt, "--output", str(out), "--force"]
    if build:
        command.append("--build")
    # the storage URL (and its password) goes in the child's environment, not on its command line (ps)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", STORAGE_ENV: storage}
    try:
        timeout = BUILD_TIMEOUT_S if build else EXPORT_TIMEOUT_S
        done = subprocess.run(command, cwd=workdir(), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"building the {fmt} bundle of trial {trial} took over {timeout} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("tinyfront: error:")]
        reason = lines[-1].removeprefix("tinyfront: error:").strip() if lines else done.stderr.strip()[-600:]
        out.unlink(missing_ok=True)
        raise ExportError(f"cannot build the {fmt} bundle of trial {trial}: {reason or 'exit ' + str(done.returncode)}")
    return out


def bundle_files(path: Path) -> dict[str, int]:
    """File name -> uncompressed size of every file in the bundle zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {info.filename: info.file_size for info in zf.infolist() if not info.is_dir()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"bundle {path.name} is unreadable: {exc}") from None
