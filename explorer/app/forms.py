"""The Search page's form, checked before anything starts, and the dataset the browser picks.

:func:`search_argv` turns a :class:`SearchForm` into the ``tinyfront search`` arguments after the
same checks the search itself makes (target, budgets, space, objectives, study name), plus the
app's own: budgets within the board, paths inside the working folder, an existing study of the
same name searching the same target, family and objectives. Every refusal is a
:class:`~search.errors.ConfigError` or :class:`~search.errors.DataError` that says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.app.state import check_study_name, inside_workdir, safe_filename, state_dir, workdir
from search.errors import ConfigError, DataError
from search.study import DEFAULT_OBJECTIVES

if TYPE_CHECKING:
    from search.data import Dataset
    from search.targets import Target

MAX_TRIALS = 1000
MAX_WORKERS = 8
MAX_EPOCHS = 100
MAX_LATENCY_BUDGET_MS = 60_000.0
MAX_UPLOAD_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class SearchForm:
    """What the Search page's form holds (``data=None`` is the built-in digits demo)."""

    study: str
    target: str
    flash_budget_kb: float
    sram_budget_kb: float
    latency_budget_ms: float
    data: str | None = None
    family: str = "mobilenet_v1"
    width_min: float = 0.25
    width_max: float = 1.0
    width_step: float = 0.25
    sparsity_min: float = 0.0
    sparsity_max: float = 0.8
    sparsity_step: float = 0.1
    precisions: tuple[str, ...] = ()
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    trials: int = 20
    workers: int = 1
    epochs: int = 5
    finetune_epochs: int = 2
    sampler: str = "tpe"
    seed: int = 0


def targets_file() -> Path | None:
    """``<workdir>/targets.toml`` when the working folder has one (it wins over the shipped file), else None."""
    path = workdir() / "targets.toml"
    return path if path.is_file() else None


def load_app_targets() -> dict[str, Target]:
    from search.targets import load_targets

    return load_targets(targets_file())


def check_budgets(target: Target, flash_kb: float, sram_kb: float, latency_ms: float) -> Target:
    """``target`` with the form's budgets, each checked against the board (0 < budget <= what it has)."""
    for label, value, most in (
        ("flash budget", flash_kb, target.flash_kb),
        ("SRAM budget", sram_kb, target.sram_kb),
        ("latency budget", latency_ms, MAX_LATENCY_BUDGET_MS),
    ):
        unit = "ms" if label.startswith("latency") else "KiB"
        if not 0 < value <= most:
            raise ConfigError(
                f"{label} must be > 0 and <= {most:g} {unit} ({target.name} has {most:g} {unit}), got {value:g} {unit}"
            )
    return target.with_budgets(flash_kb, sram_kb, latency_ms)


def _check_int(label: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{label} must be from {low} to {high}, got {value}")


def search_argv(form: SearchForm, storage: str) -> list[str]:
    """The ``tinyfront search`` arguments for ``form``, or the first problem as ConfigError / DataError."""
    from search.space import SearchSpace
    from search.study import StudyConfig

    study = check_study_name(form.study)
    targets = load_app_targets()
    if form.target not in targets:
        raise ConfigError(f"unknown target '{form.target}'; pick one of: {', '.join(sorted(targets))}")
    own = targets[form.target]
    target = check_budgets(own, form.flash_budget_kb, form.sram_budget_kb, form.latency_budget_ms)
    _check_int("trials", form.trials, 1, MAX_TRIALS)
    _check_int("workers", form.workers, 1, MAX_WORKERS)
    _check_int("epochs", form.epochs, 1, MAX_EPOCHS)
    _check_int("fine-tune epochs", form.finetune_epochs, 0, MAX_EPOCHS)
    if not form.precisions:
        raise ConfigError("pick at least one precision")
    space = SearchSpace(
        width_min=form.width_min,
        width_max=form.width_max,
        width_step=form.width_step or None,
        sparsity_min=form.sparsity_min,
        sparsity_max=form.sparsity_max,
        sparsity_step=form.sparsity_step or None,
        precisions=tuple(form.precisions),
    ).resolved(target)
    data = str(inside_workdir(form.data)) if form.data else None
    if data is not None:
        check_dataset(data)
    StudyConfig(target=target, study_name=study, family=form.family, space=space, objectives=tuple(form.objectives))
    check_same_study(storage, study, target, form.family, tuple(form.objectives))
    argv = ["search", "--target", own.name, "--study", study, "--storage", storage]
    tf = targets_file()
    if tf is not None:
        argv += ["--targets", str(tf)]
    argv += ["--artifacts", str(workdir() / "tinyfront_artifacts"), "--family", form.family]
    argv += ["--trials", str(form.trials), "--workers", str(form.workers), "--sampler", form.sampler]
    argv += ["--seed", str(form.seed), "--epochs", str(form.epochs), "--finetune-epochs", str(form.finetune_epochs)]
    argv += ["--width-min", f"{form.width_min:g}", "--width-max", f"{form.width_max:g}"]
    argv += ["--width-step", f"{form.width_step:g}", "--sparsity-min", f"{form.sparsity_min:g}"]
    argv += ["--sparsity-max", f"{form.sparsity_max:g}", "--sparsity-step", f"{form.sparsity_step:g}"]
    argv += ["--precisions", ",".join(form.precisions), "--objectives", ",".join(form.objectives)]
    for flag, value, default in (
        ("--flash-budget", form.flash_budget_kb, own.flash_budget_kb),
        ("--sram-budget", form.sram_budget_kb, own.sram_budget_kb),
        ("--latency-budget", form.latency_budget_ms, own.latency_budget_ms),
    ):
        if abs(value - default) > 1e-9:
            argv += [flag, f"{value:g}"]
    if data is not None:
        argv += ["--data", data]
    return argv


def check_same_study(storage: str, study: str, target: Target, family: str, objectives: tuple[str, ...]) -> None:
    """Refuse to resume an existing study ``study`` with another target, budgets, family or objectives."""
    from explorer.app.state import list_studies

    if study not in list_studies(storage):
        return
    import optuna

    from search.storage import make_storage

    attrs = optuna.load_study(study_name=study, storage=make_storage(storage)).user_attrs
    stored = {k: v for k, v in attrs.get("target", {}).items() if k != "source"}
    wanted = {k: v for k, v in target.to_dict().items() if k != "source"}
    if stored != wanted:
        raise ConfigError(
            f"study '{study}' already exists for target '{stored.get('name')}' with other budgets or hardware; "
            "pick another study name to search with these settings"
        )
    if attrs.get("family") != family or list(attrs.get("objectives", [])) != list(objectives):
        raise ConfigError(
            f"study '{study}' already exists searching {attrs.get('family')} for "
            f"{', '.join(attrs.get('objectives', []))}; pick another study name"
        )


def check_dataset(path: str | Path) -> Dataset:
    """Load and validate the dataset at ``path`` (.npz or image folder) as the search will."""
    from search.data import load_dataset

    return load_dataset(str(path))


def save_upload(name: str, data: bytes) -> Path:
    """Write an uploaded .npz into ``<workdir>/.tinyfront/uploads`` and validate it; a bad file is removed."""
    if not name.lower().endswith(".npz"):
        raise DataError(f"expected a .npz file (numpy.savez with x, y or x_train, y_train, x_val, y_val), got {name!r}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"uploads are limited to {MAX_UPLOAD_BYTES // 2**20} MB, got {len(data) / 2**20:.0f} MB")
    path = state_dir("uploads") / safe_filename(name)
    path.write_bytes(data)
    try:
        check_dataset(path)
    except DataError:
        path.unlink(missing_ok=True)
        raise
    return path
