"""Bundles for the Export page, built by ``tinyfront export`` in a child process and kept on disk.

Building a bundle loads TensorFlow Lite Micro or tf2onnx; doing it in a child process keeps the
app's own process free of TensorFlow and safe from a crash in a converter. A bundle is written to
``<workdir>/.tinyfront/exports/<study>/trial-<N>-<format>.zip`` and reused while it is newer than
the trial's ``result.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from explorer.app.state import check_study_name, state_dir, workdir
from search.errors import ExportError

FORMATS: dict[str, str] = {
    "tflm": "TFLite Micro (C++ sources, Makefile / CMake, for microcontrollers)",
    "onnx": "ONNX Runtime (model.onnx, Python scripts, for Linux boards)",
}
EXPORT_TIMEOUT_S = 600


def bundle_path(study: str, trial: int, fmt: str) -> Path:
    """Where the bundle of ``trial`` in format ``fmt`` is kept."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown bundle format '{fmt}'; expected one of: {', '.join(FORMATS)}")
    return state_dir("exports", check_study_name(study)) / f"trial-{int(trial)}-{fmt}.zip"


def build_bundle(storage: str, study: str, trial: int, fmt: str, artifacts_dir: str | None = None) -> Path:
    """The bundle's zip, built now unless an up-to-date one exists; ExportError with the reason otherwise."""
    out = bundle_path(study, trial, fmt)
    result = Path(artifacts_dir) / "result.json" if artifacts_dir else None
    if out.is_file() and (result is None or not result.exists() or out.stat().st_mtime >= result.stat().st_mtime):
        return out
    command = [sys.executable, "-m", "explorer.cli", "export", "--study", study, "--trial", str(int(trial))]
    command += ["--storage", storage, "--format", fmt, "--output", str(out), "--force"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(
            command, cwd=workdir(), env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ExportError(f"building the {fmt} bundle of trial {trial} took over {EXPORT_TIMEOUT_S} s") from None
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
