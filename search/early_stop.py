"""Stopping a candidate early when it cannot reach the front (multi-fidelity, TFLite Micro targets).

On a TFLite Micro target a candidate's flash, SRAM and latency depend on its structure (family,
width, depth, resolution, precision), not on its sparsity: TFLM stores and runs weights densely,
and the figures are computed (flatbuffer bytes, arena bytes, instructions or MACs), not timed.
They were identical across all nine sparsities of each width and precision in both 144-point grids
of ``benchmarks/search_efficiency.py`` (digits and ``bench:kws``). So once one candidate of a
structure has been measured in a study (a *sibling*: same structure, any sparsity), the cost side
of every other sparsity of it is known before it is trained. Two rules use that:

1. **Infeasible sibling.** The sibling exceeds a budget, so the candidate exceeds it too. It is
   stopped before any training.
2. **Dominated after a short quantisation-aware fine-tune.** An ``int8_qat`` candidate is checked at
   the end of every QAT epoch but the last: its Keras validation accuracy ``a`` is measured. It is
   stopped when a finished feasible trial costs no more than the sibling on every cost objective and
   its deployed accuracy is above ``a + margin``: the remaining epochs, conversion and deployment
   would have to raise the accuracy by more than ``margin`` for it to reach the front.
   ``benchmarks/early_stop.py`` measures what they add (:data:`MARGIN`).

   The pruning fine-tune is not checked. Its schedule is still removing weights at an epoch boundary
   (it reaches the final sparsity at 70 % of the fine-tune), so a checkpoint there is a trough: the
   last epoch added up to 40 accuracy points at sparsity 0.8 on the digits demo, 53 on bench:kws.

A stopped candidate becomes a PRUNED trial. It records ``stop_reason``, the seconds it used and its
checkpoints, and it carries the sibling's budget constraints, so the sampler learns whether that
region is infeasible. Host-timed targets (LiteRT, ONNX Runtime) have noisy latencies, so a sibling's
figures are not the candidate's there, and the rule is off.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import CandidateError
from search.result import BUDGETS, CandidateSpec, budget_of
from search.targets import Target

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["CHECKED_PHASE", "MARGIN", "STOP_REASON_KEY", "CandidateStopped", "Monitor", "StopRule", "stop_rule"]

#: Accuracy (as a fraction) that the rest of a QAT fine-tune, conversion and deployment are assumed
#: unable to add to a checkpoint's Keras accuracy. ``benchmarks/early_stop.py`` measured at most
#: +3.6 points on the digits demo and +2.2 on bench:kws (36 QAT checkpoints each); the margin keeps
#: headroom above them.
MARGIN = 0.10
#: The phase whose checkpoints the rule uses (see the module docstring for why not the pruning one).
CHECKED_PHASE = "quantisation-aware fine-tune"
STOP_REASON_KEY = "stop_reason"


class CandidateStopped(CandidateError):
    """A candidate stopped by the rule: not a failure; the objective records it as a PRUNED trial."""

    def __init__(self, reason: str, stage_seconds: dict[str, float], checkpoints: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage_seconds = stage_seconds
        self.checkpoints = checkpoints


@dataclass(frozen=True)
class StopRule:
    """What a study's finished trials say about one candidate before it is built."""

    sibling: int
    costs: dict[str, float]
    constraints: list[float]
    infeasible: str | None = None
    bar: float | None = None  # deployed accuracy of the best feasible trial costing no more
    bar_trial: int | None = None
    margin: float = MARGIN

    def before_training(self) -> str | None:
        """The reason to stop before any training, or None."""
        return self.infeasible

    def after_epoch(self, accuracy: float, phase: str, epoch: int, epochs: int) -> str | None:
        """The reason to stop after ``epoch`` of ``epochs`` of ``phase`` at Keras accuracy ``accuracy``, or None.
        Only :data:`CHECKED_PHASE` checkpoints can stop a candidate."""
        if phase != CHECKED_PHASE or self.bar is None or accuracy + self.margin >= self.bar:
            return None
        return (
            f"stopped after {phase} epoch {epoch} of {epochs}: Keras accuracy {accuracy * 100:.1f}% + margin "
            f"{self.margin * 100:.0f} points < {self.bar * 100:.1f}% of trial {self.bar_trial}, which costs no more "
            f"(same flash, SRAM and latency as trial {self.sibling}, its sibling at another sparsity)"
        )

    @property
    def watches_accuracy(self) -> bool:
        return self.bar is not None


def _structure(spec: dict[str, Any]) -> CandidateSpec:
    """The candidate with its sparsity set aside: what fixes flash, SRAM and latency on TFLM."""
    return dataclasses.replace(CandidateSpec.from_dict(spec), sparsity=0.0)


def _figure(trial: FrozenTrial, name: str) -> float:
    return float(trial.user_attrs["result"]["figures"][name]["value"])


def stop_rule(
    trials: Iterable[FrozenTrial], spec: CandidateSpec, objectives: Sequence[str], target: Target
) -> StopRule | None:
    """The rule for ``spec`` given the study's COMPLETE ``trials``; None when it does not apply.

    It applies on TFLM targets once a sibling (same structure, other sparsity) has been measured.
    """
    if target.runtime != "tflm":
        return None
    finished = [t for t in trials if "result" in t.user_attrs and "constraints" in t.user_attrs]
    wanted = _structure(spec.to_dict())
    siblings = [t for t in finished if _structure(t.user_attrs.get("spec", {})) == wanted]
    if not siblings:
        return None
    sibling = min(siblings, key=lambda t: t.number)
    constraints = [float(v) for v in sibling.user_attrs["constraints"]]
    cost_names = [n for n in objectives if n != "accuracy"]
    costs = {n: _figure(sibling, n) for n in {*cost_names, *BUDGETS.values()}}
    over = [
        f"{b} {costs[key]:g} > {budget_of(target, b):g}"
        for (b, key), c in zip(BUDGETS.items(), constraints, strict=True)
        if c > 0
    ]
    if over:
        reason = (
            f"stopped before training: over budget ({', '.join(over)}), as measured on trial {sibling.number}, "
            "the same structure at another sparsity (on TFLM sparsity does not change flash, SRAM or latency)"
        )
        return StopRule(sibling.number, costs, constraints, infeasible=reason)
    if "accuracy" not in objectives:
        return StopRule(sibling.number, costs, constraints)
    bar, bar_trial = None, None
    for t in finished:
        if any(float(v) > 0 for v in t.user_attrs["constraints"]):
            continue
        if all(_figure(t, n) <= costs[n] for n in cost_names):
            acc = _figure(t, "accuracy")
            if bar is None or acc > bar:
                bar, bar_trial = acc, t.number
    return StopRule(sibling.number, costs, constraints, bar=bar, bar_trial=bar_trial)


@dataclass
class Monitor:
    """Checkpoints of one candidate's last fine-tune phase, and the rule that may stop it.

    With ``rule`` None (or a rule with no accuracy to beat) and ``record`` False, it does nothing and
    costs nothing. With ``record`` True the checkpoints are measured even when nothing can stop the
    candidate (``benchmarks/early_stop.py`` uses this to measure what a fine-tune adds after them).
    """

    rule: StopRule | None = None
    record: bool = False
    started: float = field(default_factory=time.perf_counter)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None

    def callback(self, phase: str, epochs: int, x_val: np.ndarray, y_val: np.ndarray) -> Any:
        """A Keras callback for the fit of ``phase`` (``epochs`` epochs); None when nothing is checked or recorded."""
        watched = phase == CHECKED_PHASE and self.rule is not None and self.rule.watches_accuracy
        if not (self.record or watched) or epochs < 2:
            return None
        from search import _lazy
        from search.training import keras_accuracy

        monitor = self

        class _Checkpoint(_lazy.keras().callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                if epoch + 1 >= epochs:
                    return
                acc = keras_accuracy(self.model, x_val, y_val)
                monitor.checkpoints.append(
                    {
                        "phase": phase,
                        "epoch": epoch + 1,
                        "of": epochs,
                        "keras_accuracy": round(acc, 6),
                        "seconds": round(time.perf_counter() - monitor.started, 3),
                    }
                )
                reason = monitor.rule.after_epoch(acc, phase, epoch + 1, epochs) if monitor.rule else None
                if reason is not None:
                    monitor.reason = reason
                    self.model.stop_training = True

        return _Checkpoint()
