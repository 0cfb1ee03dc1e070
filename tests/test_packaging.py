"""The board file ships inside the package (issue 10, item 13): a wheel installed into a fresh
virtual environment finds it, and the packaged copy is the repository's ``targets.toml``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_packaged_targets_file_is_the_repository_one() -> None:
    from search.targets import DEFAULT_TARGETS_FILE, PACKAGED_TARGETS_FILE, REPO_TARGETS_FILE, load_targets

    assert PACKAGED_TARGETS_FILE.read_bytes() == REPO_TARGETS_FILE.read_bytes(), (
        "search/targets.toml must equal the top-level targets.toml: cp targets.toml search/targets.toml"
    )
    assert DEFAULT_TARGETS_FILE == REPO_TARGETS_FILE  # in a checkout, the file users edit is the default
    assert load_targets(PACKAGED_TARGETS_FILE) == load_targets(REPO_TARGETS_FILE)


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_tinyfront_targets(tmp_path: Path) -> None:
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("no source tree (pyproject.toml) to build the wheel from")
    # Build from a copy, so nothing (build/, *.egg-info) is written into the repository.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "targets.toml"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in ("search", "explorer", "firmware_export"):
        shutil.copytree(REPO / package, src / package, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    (wheel,) = wheels.glob("tinyfront-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for needed in (
        "search/targets.toml",
        "explorer/commands/targets.py",
        "explorer/app/main.py",
        "explorer/app/pages/front.py",
        "firmware_export/templates/tflm/Makefile",
    ):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    venv = tmp_path / "venv"
    # --system-site-packages: TensorFlow and the other dependencies come from this interpreter.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, cwd=tmp_path, env=env, timeout=600)

    run = tmp_path / "elsewhere"  # not the repository: nothing there to find by accident
    run.mkdir()
    probe = (
        "import search.targets as t, explorer.commands.front as f, explorer.app.launcher as l; "
        "print(t.__file__); print(t.DEFAULT_TARGETS_FILE); print(f.__file__); print(l.__file__)"
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), f"imported {where[0]}, not the installed wheel"
    assert Path(where[1]).is_relative_to(venv) and Path(where[1]).name == "targets.toml"
    assert all(Path(w).is_relative_to(venv) for w in where[2:]), where  # sub-packages come from the wheel too
    done = subprocess.run(
        [str(venv / "bin" / "tinyfront"), "targets"], cwd=run, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for board in ("nucleo-f446re", "stm32l552", "nrf5340"):
        assert board in done.stdout
    assert list(run.iterdir()) == []  # listing boards writes nothing
