"""A study survives moving (or cloning) its project folder: the calibration file counts by its content,
a refusal names what differs, and a trial's artifacts are found under the study's current root.

Every test builds a real project under ``tmp_path`` (targets file, calibration file, SQLite storage,
artifacts folder), creates the study without training anything, and moves the folder with ``rename``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from test_targets import GOOD, write_calibration

from firmware_export import trial_artifacts
from search.data import Dataset, load_demo
from search.errors import ConfigError, ExportError
from search.study import StudyConfig, config_from_study, create_or_load_study
from search.targets import get_target

STUDY = "moved"
CALIBRATED = GOOD.replace('runtime = "tflm"', 'runtime = "tflm"\nlatency_calibration = "calibrations/board.json"')


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_demo(seed=0)


def _project(folder: Path, targets: str = CALIBRATED, cpi: float = 1.2) -> Path:
    """A project folder: ``targets.toml`` naming ``calibrations/board.json`` (relative), and that file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_calibration(folder / "calibrations" / "board.json", cpi=cpi)
    (folder / "targets.toml").write_text(targets)
    return folder


def _config(project: Path) -> StudyConfig:
    """The study as `tinyfront search --targets targets.toml --target board` run in ``project`` makes it."""
    return StudyConfig(
        target=get_target("board", project / "targets.toml"),
        study_name=STUDY,
        storage=f"sqlite:///{project / 'tinyfront.db'}",
        artifacts_root=str(project / "tinyfront_artifacts"),
    )


def _refusal(config: StudyConfig, data: Dataset) -> str:
    with pytest.raises(ConfigError) as err:
        create_or_load_study(config, data)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"study '{STUDY}' was created for target 'board'")
    assert message.endswith("use another --study name or `tinyfront recheck`")
    return message


def test_resume_after_moving_the_project_folder(tmp_path: Path, data: Dataset) -> None:
    old = _project(tmp_path / "old")
    study = create_or_load_study(_config(old), data)
    recorded = study.user_attrs["target"]
    assert recorded["latency_calibration"] == str(old / "calibrations" / "board.json")
    assert len(recorded["latency_calibration_sha256"]) == 64

    new = (old.rename(tmp_path / "new")).resolve()
    # Before the study is resumed there, a worker cannot use the calibration the study names.
    with pytest.raises(ConfigError, match=r"uses latency_calibration .*/old/calibrations/board.json, which does not"):
        config_from_study(_config(new).storage, STUDY)

    again = create_or_load_study(_config(new), data)
    assert again._study_id == study._study_id and again.user_attrs["created"] == study.user_attrs["created"]
    assert again.user_attrs["target"]["latency_calibration"] == str(new / "calibrations" / "board.json")
    assert again.user_attrs["target"]["latency_calibration_sha256"] == recorded["latency_calibration_sha256"]
    assert again.user_attrs["artifacts_root"] == str(new / "tinyfront_artifacts")
    rebuilt = config_from_study(_config(new).storage, STUDY)  # a worker now finds the file
    assert rebuilt.target.latency_calibration == str(new / "calibrations" / "board.json")
    assert rebuilt.artifacts_root == str(new / "tinyfront_artifacts")


def test_another_file_with_the_same_content_is_the_same_calibration(tmp_path: Path, data: Dataset) -> None:
    project = _project(tmp_path / "p")
    create_or_load_study(_config(project), data)
    copy = project / "calibrations" / "copy.json"
    copy.write_bytes((project / "calibrations" / "board.json").read_bytes())
    (project / "targets.toml").write_text(CALIBRATED.replace("board.json", "copy.json"))
    study = create_or_load_study(_config(project), data)
    assert study.user_attrs["target"]["latency_calibration"] == str(copy)


def test_a_changed_calibration_file_is_refused_and_named(tmp_path: Path, data: Dataset) -> None:
    project = _project(tmp_path / "p")
    study = create_or_load_study(_config(project), data)
    before = study.user_attrs["target"]["latency_calibration_sha256"]
    write_calibration(project / "calibrations" / "board.json", cpi=1.5)  # same path, other content
    message = _refusal(_config(project), data)
    path = project / "calibrations" / "board.json"
    assert f"latency_calibration: {path} changed, content sha256 {before[:12]}… → " in message
    assert message.count("→") == 1 and message.count(";") == 1  # nothing else differs
    with pytest.raises(ConfigError, match=rf"latency_calibration {re.escape(str(path))}, which changed since"):
        config_from_study(_config(project).storage, STUDY)  # a worker refuses it too


def test_a_changed_budget_is_named_with_both_values(tmp_path: Path, data: Dataset) -> None:
    project = _project(tmp_path / "p")
    create_or_load_study(_config(project), data)
    (project / "targets.toml").write_text(CALIBRATED.replace("flash_kb = 512", "flash_kb = 1024"))
    message = _refusal(_config(project), data)
    assert "with other values (flash_kb: 512 → 1024);" in message
    edited = get_target("board", project / "targets.toml")
    tighter = replace(_config(project), target=edited.with_budgets(sram_budget_kb=100, latency_budget_ms=50))
    message = _refusal(tighter, data)
    assert "flash_kb: 512 → 1024; app_sram_kb: 64 → 156; latency_budget_ms: 200 → 50" in message


def test_another_board_is_named(tmp_path: Path, data: Dataset) -> None:
    project = _project(tmp_path / "p", targets=GOOD)
    create_or_load_study(_config(project), data)
    other = replace(_config(project), target=get_target("nucleo-f446re"))
    message = _refusal(other, data)
    assert "created for target 'board', not 'nucleo-f446re' (name: board → nucleo-f446re;" in message
    assert "core: cortex-m33 → cortex-m4;" in message and "description: a board → " in message


def test_a_study_recorded_before_digests_compares_paths(tmp_path: Path, data: Dataset) -> None:
    project = _project(tmp_path / "p")
    study = create_or_load_study(_config(project), data)
    old_record = {k: v for k, v in study.user_attrs["target"].items() if k != "latency_calibration_sha256"}
    study.set_user_attr("target", old_record)
    # Same path: the same target; the record gains the digest.
    again = create_or_load_study(_config(project), data)
    assert again.user_attrs["target"]["latency_calibration_sha256"] == file_digest(project / "calibrations/board.json")
    # Another path with the same content: without a recorded digest, the paths differ.
    again.set_user_attr("target", old_record)
    moved = project.rename(tmp_path / "q").resolve()
    message = _refusal(_config(moved), data)
    assert f"latency_calibration: {project}/calibrations/board.json → {moved}/calibrations/board.json" in message


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _finished_trial(study: optuna.Study, folder: Path) -> None:
    """A COMPLETE trial whose artifacts are ``folder`` (with the file an export reads first)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    folder.mkdir(parents=True)
    (folder / "result.json").write_text("{}")
    trial = create_trial(
        params={"width": 0.5},
        distributions={"width": FloatDistribution(0.25, 1.0)},
        values=[0.9, 1.0, 100.0],
        user_attrs={"artifacts_dir": str(folder)},
    )
    study.add_trial(trial)


def test_a_moved_trial_folder_is_found_under_the_current_artifacts_root(
    tmp_path: Path, data: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _project(tmp_path / "old")
    study = create_or_load_study(_config(old), data)
    _finished_trial(study, old / "tinyfront_artifacts" / STUDY / "trial-0")
    recorded = str(old / "tinyfront_artifacts" / STUDY / "trial-0")
    new = old.rename(tmp_path / "new").resolve()
    storage = _config(new).storage
    found = new / "tinyfront_artifacts" / STUDY / "trial-0"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ExportError, match=rf"trial 0 of study '{STUDY}': artifacts folder {re.escape(recorded)} does"):
        trial_artifacts(storage, STUDY, 0)  # the study still records the old root; the working folder has none
    monkeypatch.chdir(new)
    assert trial_artifacts(storage, STUDY, 0) == found  # under the working folder's tinyfront_artifacts

    monkeypatch.chdir(elsewhere)
    create_or_load_study(_config(new), data)  # resumed in the moved project: the new root is recorded
    assert trial_artifacts(storage, STUDY, 0) == found
    assert (trial_artifacts(storage, STUDY, 0) / "result.json").read_text() == "{}"

    (found / "result.json").unlink()
    found.rmdir()
    with pytest.raises(ExportError) as err:
        trial_artifacts(storage, STUDY, 0)
    assert str(err.value) == (
        f"trial 0 of study '{STUDY}': artifacts folder {recorded} does not exist, nor does {found}, "
        f"{elsewhere.resolve() / 'tinyfront_artifacts' / STUDY / 'trial-0'} (the artifacts roots looked in)"
    )
    from search.front import recheck

    (row,) = recheck(storage, STUDY, get_target("board", new / "targets.toml")).trials
    assert row.fail_reason == f"not rechecked, its artifacts are gone: {str(err.value).split(': ', 1)[1]}"
