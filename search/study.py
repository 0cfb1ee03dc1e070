"""One tinyfront study: its configuration, how it is created or resumed, its sampler and objective.

The study records what it is on itself (``study.user_attrs``): target, dataset fingerprint and
summary, dataset spec, family, space, objectives, sampler, seed, training settings, artifacts
root, tinyfront version and creation time, so anyone opening the storage later (a worker on
another machine, ``tinyfront front``) knows what it holds.

The objective is a plain function of the trial: suggest a point of the space, build the
:class:`~search.result.CandidateSpec`, :func:`~search.candidate.evaluate_candidate` it, record the
full result with ``trial.set_user_attr`` and the budgets with ``trial.set_constraint`` (values
<= 0 are feasible; Optuna 5 reads constraints from the trial, its ``constraints_func`` argument is
deprecated), and return the objective values. A candidate that raises records a one-line
``fail_reason`` and re-raises; the optimisation loop catches it, so the trial is FAIL and the
search goes on.

Samplers on a discrete space propose the same point again. When a trial's full spec (point and
training settings) equals that of an earlier COMPLETE trial of the study, the objective does not
build it again: it copies that trial's ``result``, ``artifacts_dir``, constraints and objective
values, sets ``duplicate_of`` to its number and ``stage_seconds`` to ``{}``. The duplicate is a
COMPLETE trial and uses one trial of the budget, at almost no cost.

With ``early_stop`` (the default) the objective asks :func:`search.early_stop.stop_rule` what the
study's finished trials say about the candidate. A candidate that the rule stops is recorded with
``stop_reason``, its stage seconds, checkpoints and its structure's constraints, and ends as a PRUNED
trial (``optuna.TrialPruned``), which counts toward the budget.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import CandidateError, ConfigError
from search.names import DEFAULT_ARTIFACTS_ROOT, check_study_name, contained
from search.result import BUDGETS, OBJECTIVES, CandidateSpec
from search.space import SearchSpace, suggest
from search.storage import (
    DEFAULT_STORAGE,
    FAIL_REASON_KEY,
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    is_storage_fault,
    load_existing_study,
    make_storage,
)
from search.targets import Target, file_sha256

if TYPE_CHECKING:
    import optuna

    from search.data import Dataset

log = logging.getLogger(__name__)

SAMPLERS: tuple[str, ...] = ("tpe", "nsga2", "random")
#: accuracy, latency and flash: the three figures a board buyer trades. SRAM stays a budget
#: (a constraint on every trial) without being a fourth objective, which keeps the front small
#: and readable and the hypervolume cheap; pass ``objectives`` to add it.
DEFAULT_OBJECTIVES: tuple[str, ...] = ("accuracy", "latency_ms", "flash_kb")
#: Random trials before TPE starts modelling (see benchmarks/search_efficiency.py for the choice).
TPE_STARTUP_TRIALS = 5
#: Seeds are 32-bit unsigned (numpy's and Optuna's samplers take 0 <= seed < 2**32).
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study, plus how to reach its storage."""

    target: Target
    study_name: str = "tinyfront"
    storage: str = DEFAULT_STORAGE
    data: str | None = None
    data_seed: int = 0
    family: str = "mobilenet_v1"
    space: SearchSpace = field(default_factory=SearchSpace)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    sampler: str = "tpe"
    seed: int = 0
    epochs: int = 5
    finetune_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = CandidateSpec.learning_rate
    artifacts_root: str = DEFAULT_ARTIFACTS_ROOT
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    #: Stop candidates that cannot reach the front (search.early_stop; TFLM targets only).
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_study_name(self.study_name)
        check_seed(self.seed)
        check_seed(self.data_seed, "data seed")
        check_family(self.family)
        if not self.objectives:
            raise ConfigError(f"objectives must name at least one of: {', '.join(OBJECTIVES)}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ConfigError(f"unknown objective '{name}'; expected some of: {', '.join(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives must not repeat, got {', '.join(self.objectives)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler '{self.sampler}'; expected one of: {', '.join(SAMPLERS)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be a finite number > 0, got {self.learning_rate:g}")

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]

    def training(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "finetune_epochs": self.finetune_epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
        }

    def study_dir(self) -> Path:
        """``<artifacts root>/<study>``: per-trial folders and the base-model cache live here."""
        return contained(self.artifacts_root, check_study_name(self.study_name), what="study folder")


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` when it is an integer with 0 <= seed < 2**32; ConfigError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    return seed


def check_family(family: str) -> str:
    """``family`` when it is a built-in family or a ``module:function`` whose function takes
    ``(input_shape, num_classes, width)``; ConfigError otherwise. Imports the module (it is trusted
    input, see README) but calls nothing."""
    import inspect

    from search.families import FAMILIES, _load_builder

    if family in FAMILIES:
        return family
    if ":" not in family:
        raise ConfigError(f"family must be one of {', '.join(FAMILIES)} or 'package.module:function', got {family!r}")
    func = _load_builder(family)
    if not (inspect.isfunction(func) or inspect.ismethod(func)):
        raise ConfigError(
            f"family {family!r} must be a Python function returning a tf_keras Model, found "
            f"{type(func).__name__} {getattr(func, '__qualname__', '')}".rstrip()
        )
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError as exc:
        raise ConfigError(
            f"family {family!r} must accept (input_shape, num_classes, width) and return a tf_keras Model: {exc}"
        ) from None
    return family


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (one of :data:`SAMPLERS`), seeded."""
    import optuna

    if name == "tpe":
        # Multivariate TPE models width x sparsity x precision jointly; constrained trials are split
        # feasible-first (Optuna's constrained TPE) from the constraints each trial sets.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=TPE_STARTUP_TRIALS)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler '{name}'; expected one of: {', '.join(SAMPLERS)}")


_CALIBRATION = "latency_calibration"
_CALIBRATION_SHA256 = "latency_calibration_sha256"


def _target_differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: stored → now`` for each field of two target records that defines the board and budgets.

    Where the targets file came from (``source``) does not count. A calibration file counts by its
    content when both records carry its SHA-256 (a moved or cloned project finds the same file at
    another path), by its path when the stored one has no digest (a study made before digests).
    """
    by_content = _CALIBRATION_SHA256 in stored and _CALIBRATION_SHA256 in now
    ignored = {"source", _CALIBRATION_SHA256, *((_CALIBRATION,) if by_content else ())}
    keys = [k for k in dict.fromkeys([*stored, *now]) if k not in ignored]
    out = [f"{k}: {_shown(stored.get(k))} → {_shown(now.get(k))}" for k in keys if stored.get(k) != now.get(k)]
    if by_content and stored[_CALIBRATION_SHA256] != now[_CALIBRATION_SHA256]:
        before, after = stored[_CALIBRATION_SHA256][:12], now[_CALIBRATION_SHA256][:12]
        paths = f"{stored.get(_CALIBRATION)} → {now.get(_CALIBRATION)}"
        if stored.get(_CALIBRATION) == now.get(_CALIBRATION):
            paths = f"{now.get(_CALIBRATION)} changed"
        out.append(f"{_CALIBRATION}: {paths}, content sha256 {before}… → {after}…")
    return out


def _shown(value: Any) -> str:
    """A recorded target value as the refusal shows it: ``512`` for 512.0, ``none`` for None."""
    if value is None:
        return "none"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def study_attrs(config: StudyConfig, dataset: Dataset, space: SearchSpace) -> dict[str, Any]:
    """The user attributes a new study records about itself."""
    from search import __version__

    return {
        "target": config.target.to_dict(),
        "dataset": dataset.describe(),
        "dataset_fingerprint": dataset.fingerprint,
        "dataset_spec": config.data,
        "data_seed": config.data_seed,
        "family": config.family,
        "space": space.to_dict(),
        "objectives": list(config.objectives),
        "sampler": config.sampler,
        "seed": config.seed,
        "training": config.training(),
        "early_stop": config.early_stop,
        "artifacts_root": str(Path(config.artifacts_root).resolve()),
        "tinyfront_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def create_or_load_study(config: StudyConfig, dataset: Dataset | None = None) -> optuna.Study:
    """Create the study, or load it and check it is the same search (target, dataset, family, objectives).

    A different search space, sampler or seed on resume is accepted and recorded (``space``,
    ``sampler``, ``seed`` are updated; ``created`` is kept), and so are other paths of the same
    search (a moved or cloned project): the target's record (its calibration file found at another
    path, same content) and ``artifacts_root``. Other training settings (epochs,
    fine-tune epochs, batch size, learning rate) are refused: the trials would mix them.
    """
    import optuna

    if dataset is None:
        from search.data import load_dataset

        dataset = load_dataset(config.data, seed=config.data_seed)
    space = config.space.resolved(config.target)
    storage = make_storage(
        config.storage, heartbeat_interval=config.heartbeat_interval, grace_period=config.grace_period
    )
    attrs = study_attrs(config, dataset, space)
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage)
    except KeyError:
        study = None
    if study is None:
        try:
            directions: Any = config.directions
            study = optuna.create_study(study_name=config.study_name, storage=storage, directions=directions)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
            study = optuna.load_study(study_name=config.study_name, storage=storage)
        else:
            for key, value in attrs.items():
                study.set_user_attr(key, value)
            return study
    _check_same_search(study, config, attrs)
    # The same search may record other paths: a moved or cloned project (target's calibration file, artifacts).
    for key in ("space", "sampler", "seed", "early_stop", "target", "artifacts_root"):
        if study.user_attrs.get(key) != attrs[key]:
            log.info(
                "study %s: %s changed from %r to %r", config.study_name, key, study.user_attrs.get(key), attrs[key]
            )
            study.set_user_attr(key, attrs[key])
    return study


def _check_same_search(study: optuna.Study, config: StudyConfig, attrs: dict[str, Any]) -> None:
    stored = study.user_attrs
    name = config.study_name
    if "target" not in stored:
        raise ConfigError(f"study '{name}' exists but was not created by tinyfront (no target recorded); pick --study")
    differences = _target_differences(stored["target"], attrs["target"])
    if differences:
        was = stored["target"].get("name")
        other = f", not '{config.target.name}'" if was != config.target.name else " with other values"
        raise ConfigError(
            f"study '{name}' was created for target '{was}'{other} ({'; '.join(differences)}); use another "
            "--study name or `tinyfront recheck`"
        )
    if stored.get("dataset_fingerprint") != attrs["dataset_fingerprint"]:
        raise ConfigError(
            f"study '{name}' was created on dataset {stored.get('dataset', {}).get('name')} (fingerprint "
            f"{stored.get('dataset_fingerprint')}), found {attrs['dataset']['name']} (fingerprint "
            f"{attrs['dataset_fingerprint']}); use another --study name"
        )
    if stored.get("family") != config.family:
        raise ConfigError(
            f"study '{name}' searches family '{stored.get('family')}', got '{config.family}'; use another --study name"
        )
    if list(stored.get("objectives", [])) != list(config.objectives):
        raise ConfigError(
            f"study '{name}' optimises {', '.join(stored.get('objectives', []))}, got "
            f"{', '.join(config.objectives)}; objectives cannot change within a study"
        )
    stored_training = stored.get("training") or {}
    for key, value in attrs["training"].items():
        if key in stored_training and stored_training[key] != value:
            raise ConfigError(
                f"study '{name}' trains with {key} = {stored_training[key]!r}, got {value!r}; training settings "
                f"cannot change within a study (its trials would mix them): pass {key} = {stored_training[key]!r} "
                "or use another --study name"
            )


def config_from_study(
    storage: str,
    study_name: str,
    *,
    artifacts_root: str | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> StudyConfig:
    """Rebuild the :class:`StudyConfig` of an existing study from what it recorded (for ``tinyfront worker``)."""
    check_study_name(study_name)
    attrs = load_existing_study(storage, study_name).user_attrs
    if "target" not in attrs:
        raise ConfigError(f"study '{study_name}' was not created by tinyfront (no target recorded)")
    training = attrs["training"]
    return StudyConfig(
        target=_recorded_target(attrs["target"], study_name),
        study_name=study_name,
        storage=storage,
        data=attrs.get("dataset_spec"),
        data_seed=int(attrs.get("data_seed", 0)),
        family=attrs["family"],
        space=SearchSpace.from_dict(attrs["space"]),
        objectives=tuple(attrs["objectives"]),
        sampler=attrs["sampler"],
        seed=int(attrs["seed"]),
        epochs=int(training["epochs"]),
        finetune_epochs=int(training["finetune_epochs"]),
        batch_size=int(training["batch_size"]),
        learning_rate=float(training["learning_rate"]),
        artifacts_root=artifacts_root or attrs["artifacts_root"],
        early_stop=bool(attrs.get("early_stop", True)),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
    )


def _recorded_target(record: dict[str, Any], study_name: str) -> Target:
    """The study's recorded target, when its calibration file (if any) is here with the recorded content."""
    target = Target.from_dict(record)
    path, digest = target.latency_calibration, target.latency_calibration_sha256
    if path is None:
        return target
    if not Path(path).is_file():
        raise ConfigError(
            f"study '{study_name}' uses latency_calibration {path}, which does not exist here; resume it once with "
            f"`tinyfront search --study {study_name} --targets FILE` naming the calibration (it records the new path)"
        )
    now = file_sha256(Path(path))
    if digest is not None and now != digest:
        raise ConfigError(
            f"study '{study_name}' uses latency_calibration {path}, which changed since the study recorded it "
            f"(content sha256 {digest[:12]}… → {now[:12]}…); restore it or use another --study name"
        )
    return target


def one_line(exc: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, shortened to ``limit`` characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def make_objective(
    config: StudyConfig, dataset: Dataset, progress: Callable[[str], None] | None = None
) -> Callable[[optuna.trial.Trial], tuple[float, ...]]:
    """The objective of ``config``'s study: one real candidate per trial."""
    import optuna
    from optuna.trial import TrialState

    from search.candidate import evaluate_candidate
    from search.early_stop import STOP_REASON_KEY, CandidateStopped, Monitor, stop_rule

    space = config.space.resolved(config.target)
    study_dir = config.study_dir()

    def objective(trial: optuna.trial.Trial) -> tuple[float, ...]:
        try:
            return _evaluate(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # TinyfrontError or whatever TF raised: a FAIL trial with its reason
            if not is_storage_fault(exc):  # a failing database is not the candidate's answer: no reason
                trial.set_user_attr(FAIL_REASON_KEY, one_line(exc))
            raise

    def _evaluate(trial: optuna.trial.Trial) -> tuple[float, ...]:
        fields = suggest(trial, space)
        spec = CandidateSpec(family=config.family, seed=config.seed, **config.training(), **fields)
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        earlier = _complete_trial_with_spec(finished, spec)
        if earlier is not None:
            # The same candidate was already built and measured in this study: serve its record.
            trial.set_user_attr("duplicate_of", earlier.number)
            trial.set_user_attr("artifacts_dir", earlier.user_attrs["artifacts_dir"])
            _record(trial, earlier.user_attrs["result"], earlier.user_attrs["constraints"], {}, True)
            log.debug("trial %d repeats trial %d's candidate; not evaluated again", trial.number, earlier.number)
            return tuple(float(v) for v in earlier.values)
        out_dir = contained(study_dir, f"trial-{int(trial.number)}", what="trial folder")
        trial.set_user_attr("artifacts_dir", str(out_dir))
        rule = stop_rule(finished, spec, config.objectives, config.target) if config.early_stop else None
        try:
            result = evaluate_candidate(
                spec,
                config.target,
                dataset,
                out_dir,
                cache_dir=study_dir / "base_models",
                progress=progress,
                monitor=Monitor(rule),
            )
        except CandidateStopped as stop:
            assert rule is not None
            trial.set_user_attr(STOP_REASON_KEY, stop.reason)
            trial.set_user_attr("stage_seconds", stop.stage_seconds)
            trial.set_user_attr("checkpoints", stop.checkpoints)
            trial.set_user_attr("constraints", rule.constraints)
            for budget, value in zip(BUDGETS, rule.constraints, strict=True):
                trial.set_constraint(budget, value)
            log.info("trial %d %s", trial.number, stop.reason)
            raise optuna.TrialPruned(stop.reason) from None
        values = tuple(float(result.objective_value(name)) for name in config.objectives)
        if not all(math.isfinite(v) for v in values):
            named = dict(zip(config.objectives, values, strict=True))
            raise CandidateError(f"objective values must be finite, got {named}")
        _record(trial, result.to_dict(), result.constraint_values(), result.stage_seconds, result.reused_base)
        return values

    return objective


def _complete_trial_with_spec(
    complete: list[optuna.trial.FrozenTrial], spec: CandidateSpec
) -> optuna.trial.FrozenTrial | None:
    """The first of a study's ``complete`` trials that evaluated exactly ``spec`` (point and training settings)."""
    wanted = spec.to_dict()
    for t in complete:
        if t.user_attrs.get("spec") == wanted and "result" in t.user_attrs and "constraints" in t.user_attrs:
            return t
    return None


def _record(
    trial: optuna.trial.Trial,
    result: dict[str, Any],
    constraints: list[float],
    stage_seconds: dict[str, float],
    reused_base: bool,
) -> None:
    """Store a finished candidate on ``trial``: its result, stage times and budget constraints (<= 0 is feasible)."""
    trial.set_user_attr("result", result)
    trial.set_user_attr("stage_seconds", stage_seconds)
    trial.set_user_attr("reused_base", reused_base)
    trial.set_user_attr("constraints", constraints)
    for budget, value in zip(BUDGETS, constraints, strict=True):
        trial.set_constraint(budget, value)
