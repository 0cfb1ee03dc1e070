"""``tinyfront export`` and trial lookup in an Optuna storage (SQLite under tmp_path)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from test_export_tflm import make_candidates

from explorer.cli import main
from search.errors import ExportError


@pytest.fixture(scope="session")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_candidates(tmp_path_factory.getbasetemp() / "export_candidates")


def make_storage(tmp_path: Path, artifacts_dir: Path) -> str:
    """Study 'demo': trials 0 (complete, ``artifacts_dir``), 1 (failed), 2 (no artifacts), 3 (folder gone)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="demo", storage=url, directions=["maximize", "minimize"])
    optuna.create_study(study_name="other", storage=url)
    dist = {"width": FloatDistribution(0.25, 1.0)}
    trials = [
        (TrialState.COMPLETE, {"artifacts_dir": str(artifacts_dir)}),
        (TrialState.FAIL, {"fail_reason": "CandidateError: flash 612 KB exceeds the 384 KB budget"}),
        (TrialState.COMPLETE, {}),
        (TrialState.COMPLETE, {"artifacts_dir": str(tmp_path / "deleted")}),
    ]
    for state, attrs in trials:
        values = [0.9, 1.0] if state == TrialState.COMPLETE else None
        trial = create_trial(state=state, params={"width": 0.5}, distributions=dist, values=values, user_attrs=attrs)
        study.add_trial(trial)
    return url


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    """The study with an empty folder for trial 0 (enough for the lookup errors)."""
    (tmp_path / "artifacts0").mkdir()
    return make_storage(tmp_path, tmp_path / "artifacts0")


@pytest.mark.slow
def test_export_trial_from_the_cli(
    candidates: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = make_storage(tmp_path, candidates["int8"])
    out = tmp_path / "trial0.zip"
    args = ["export", "--storage", storage, "--study", "demo", "--trial", "0", "--format", "tflm", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        sizes = {Path(i.filename).name: i.file_size for i in zf.infolist()}
    assert sizes["model.tflite"] == (candidates["int8"] / "model.tflite").stat().st_size
    for name, size in sizes.items():
        assert re.search(rf"^{re.escape(name)}\s+{size:,}$", printed, re.M), name
    assert "tensor arena:" in printed
    # An existing output needs --force.
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    onnx_out = tmp_path / "trial0_onnx.zip"
    assert (
        main(
            ["export", "--storage", storage, "--study", "demo", "--trial", "0", "--format", "onnx", "-o", str(onnx_out)]
        )
        == 0
    )
    assert "model.onnx" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("trial", "message"),
    [
        (1, r"trial 1 of study 'demo' is FAIL, not COMPLETE: CandidateError: flash 612 KB exceeds the 384 KB budget"),
        (2, r"trial 2 of study 'demo' records no artifacts_dir"),
        (
            3,
            r"trial 3 of study 'demo': artifacts folder .*deleted does not exist, nor does .*tinyfront_artifacts/demo/",
        ),
        (7, r"study 'demo' has no trial 7; its trials are numbered 0 to 3"),
    ],
)
def test_trial_errors(
    storage: str, tmp_path: Path, trial: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_export import trial_artifacts

    with pytest.raises(ExportError, match=message):
        trial_artifacts(storage, "demo", trial)
    out = tmp_path / "x.zip"
    code = main(
        ["export", "--storage", storage, "--study", "demo", "--trial", str(trial), "--format", "tflm", "-o", str(out)]
    )
    assert code == 1 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("tinyfront: error:") and re.search(message, err)


def test_unknown_study_lists_the_studies(storage: str, tmp_path: Path) -> None:
    from firmware_export import export_trial, trial_artifacts

    with pytest.raises(ExportError, match=r"no study 'nope' in .*; studies there: demo, other"):
        trial_artifacts(storage, "nope", 0)
    with pytest.raises(ExportError, match=r"unknown bundle format 'zip'"):
        export_trial(storage, "demo", 0, tmp_path / "a.zip", fmt="zip")


@pytest.mark.slow
def test_export_a_users_tflite_with_a_target(
    candidates: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.zip"
    model = candidates["int8"] / "model.tflite"
    assert main(["export", "--tflite", str(model), "--target", "ek-ra8d1", "--format", "tflm", "-o", str(out)]) == 0
    assert "mine.zip" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        makefile = zf.read("mine/Makefile").decode()
        readme = zf.read("mine/README.md").decode()
        settings = zf.read("mine/model_settings.h").decode()
    assert "CPU ?= cortex-m85" in makefile and "needs arm-none-eabi-gcc 13" in readme
    assert "(mve)" in settings  # Helium core: the MVE scratch formulas apply
    assert (
        main(
            [
                "export",
                "--tflite",
                str(model),
                "--format",
                "tflm",
                "--target",
                "no-such-board",
                "-o",
                str(tmp_path / "n.zip"),
            ]
        )
        == 1
    )
    assert "unknown target 'no-such-board'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--study", "demo", "--format", "tflm", "-o", str(tmp_path / "m.zip")])
