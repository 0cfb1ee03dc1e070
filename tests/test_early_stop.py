"""Early stopping (search.early_stop): the rule on recorded trials, and real studies it stops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from explorer.app.tables import verdict
from explorer.commands.front import render_report
from firmware_export.locate import trial_artifacts
from search.data import load_demo
from search.early_stop import CHECKED_PHASE, MARGIN, stop_rule
from search.errors import ExportError
from search.front import load_front
from search.result import CandidateSpec
from search.space import SearchSpace
from search.study import StudyConfig, create_or_load_study, make_objective, make_sampler
from search.targets import get_target

TARGET = get_target("nucleo-l4r5zi")


def _trial(number: int, spec: CandidateSpec, acc: float, latency: float, flash: float, sram: float) -> Any:
    figures = {
        "accuracy": {"value": acc},
        "latency_ms": {"value": latency},
        "flash_kb": {"value": flash},
        "sram_kb": {"value": sram},
    }
    constraints = [flash - TARGET.flash_budget_kb, sram - TARGET.sram_budget_kb, latency - TARGET.latency_budget_ms]
    t = optuna.trial.create_trial(
        values=[acc, latency, flash],
        user_attrs={"spec": spec.to_dict(), "result": {"figures": figures}, "constraints": constraints},
    )
    t.number = number
    return t


OBJECTIVES = ("accuracy", "latency_ms", "flash_kb")


def test_no_sibling_no_rule_and_host_targets_never() -> None:
    spec = CandidateSpec(width=0.5, sparsity=0.6)
    other = _trial(0, CandidateSpec(width=0.75, sparsity=0.0), 0.95, 2.0, 90.0, 10.0)
    assert stop_rule([other], spec, OBJECTIVES, TARGET) is None
    sibling = _trial(1, CandidateSpec(width=0.5, sparsity=0.0), 0.93, 2.0, 90.0, 10.0)
    assert stop_rule([other, sibling], spec, OBJECTIVES, get_target("raspberry-pi-4")) is None


def test_dominated_candidate_is_stopped_after_a_checkpoint_below_the_bar() -> None:
    spec = CandidateSpec(width=0.5, sparsity=0.6, precision="int8")
    sibling = _trial(3, CandidateSpec(width=0.5, sparsity=0.0, precision="int8"), 0.90, 2.0, 95.8, 9.3)
    cheaper_better = _trial(4, CandidateSpec(width=0.25, sparsity=0.0, precision="int8"), 0.92, 0.9, 86.2, 7.6)
    costlier = _trial(5, CandidateSpec(width=1.0, sparsity=0.0, precision="int8"), 0.99, 6.0, 120.0, 20.0)
    rule = stop_rule([sibling, cheaper_better, costlier], spec, OBJECTIVES, TARGET)
    assert rule is not None and rule.sibling == 3
    assert rule.bar == pytest.approx(0.92) and rule.bar_trial == 4  # trial 5 costs more: not a bar
    assert rule.before_training() is None
    assert rule.after_epoch(0.92 - MARGIN + 0.001, CHECKED_PHASE, 1, 2) is None
    reason = rule.after_epoch(0.70, CHECKED_PHASE, 1, 2)
    assert reason is not None
    assert "Keras accuracy 70.0% + margin 10 points < 92.0% of trial 4" in reason
    assert "trial 3" in reason
    # A pruning fine-tune's checkpoint is a trough (weights still being removed): never a reason to stop.
    assert rule.after_epoch(0.10, "pruning fine-tune", 1, 2) is None


def test_over_budget_sibling_stops_before_training() -> None:
    spec = CandidateSpec(width=1.0, sparsity=0.3, precision="float32")
    sibling = _trial(0, CandidateSpec(width=1.0, sparsity=0.0, precision="float32"), 0.95, 900.0, 120.0, 20.0)
    rule = stop_rule([sibling], spec, OBJECTIVES, TARGET)
    assert rule is not None
    assert rule.constraints[2] == pytest.approx(900.0 - TARGET.latency_budget_ms)
    reason = rule.before_training()
    assert reason is not None and f"latency 900 > {TARGET.latency_budget_ms:g}" in reason and "trial 0" in reason


def _study(tmp_path: Path, precision: str = "int8_qat", **changes: Any) -> tuple[StudyConfig, optuna.Study, Any]:
    config = StudyConfig(
        target=TARGET,
        study_name="es",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        artifacts_root=str(tmp_path / "artifacts"),
        space=SearchSpace(width_min=0.5, width_max=0.5, sparsity_min=0.0, sparsity_max=0.9, precisions=(precision,)),
        epochs=3,
        finetune_epochs=2,
    )
    config = replace(config, **changes)
    dataset = load_demo(seed=0)
    study = create_or_load_study(config, dataset)
    study.sampler = make_sampler("random", 0)
    return config, study, make_objective(config, dataset)


@pytest.mark.slow
def test_a_real_study_stops_a_hopeless_qat_candidate_and_goes_on(tmp_path: Path) -> None:
    config, study, objective = _study(tmp_path)
    for sparsity in (0.0, 0.9, 0.1):
        study.enqueue_trial({"sparsity": sparsity})
    study.optimize(objective, n_trials=3)
    dense, hopeless, mild = study.trials
    assert dense.state.name == "COMPLETE" and mild.state.name == "COMPLETE"
    assert dense.values[0] > 0.8
    assert hopeless.state.name == "PRUNED"
    reason = hopeless.user_attrs["stop_reason"]
    assert "stopped after quantisation-aware fine-tune epoch 1 of 2" in reason and "of trial 0" in reason
    (checkpoint,) = hopeless.user_attrs["checkpoints"]
    assert checkpoint["keras_accuracy"] + MARGIN < dense.values[0]
    assert hopeless.user_attrs["stage_seconds"]["qat"] > 0 and "convert" not in hopeless.user_attrs["stage_seconds"]
    assert hopeless.constraints == dense.constraints  # the sibling's budgets: feasible here
    # The mild one was checked and went on: its checkpoint is recorded on its result.
    assert mild.user_attrs["result"]["checkpoints"][0]["keras_accuracy"] + MARGIN >= dense.values[0]
    report = load_front(config.storage, config.study_name)
    row = report.row(1)
    assert row.state == "PRUNED" and row.stop_reason == reason and not row.feasible
    assert f"trial 1: {reason}" in render_report(report, all_trials=True)
    assert verdict(row, report) == f"stopped early: {reason}"
    with pytest.raises(ExportError, match="trial 1 of study 'es' is PRUNED, not COMPLETE: stopped after quantisation"):
        trial_artifacts(config.storage, config.study_name, 1)


@pytest.mark.slow
def test_an_over_budget_structure_is_stopped_before_training_and_stays_infeasible(tmp_path: Path) -> None:
    config, study, objective = _study(tmp_path, "int8", target=TARGET.with_budgets(None, None, 0.5))
    for sparsity in (0.0, 0.5):
        study.enqueue_trial({"sparsity": sparsity})
    study.optimize(objective, n_trials=2)
    over, stopped = study.trials
    assert over.state.name == "COMPLETE" and over.user_attrs["constraints"][2] > 0
    assert (
        stopped.state.name == "PRUNED"
        and "stopped before training: over budget (latency" in (stopped.user_attrs["stop_reason"])
    )
    assert stopped.user_attrs["stage_seconds"] == {}
    assert stopped.constraints == over.constraints  # the sampler sees it as infeasible


@pytest.mark.slow
def test_no_early_stop_builds_every_candidate(tmp_path: Path) -> None:
    over_budget = TARGET.with_budgets(None, None, 0.5)
    config, study, objective = _study(tmp_path, "int8", target=over_budget, early_stop=False, finetune_epochs=1)
    for sparsity in (0.0, 0.5):
        study.enqueue_trial({"sparsity": sparsity})
    study.optimize(objective, n_trials=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # both over budget, both built
    assert study.user_attrs["early_stop"] is False
