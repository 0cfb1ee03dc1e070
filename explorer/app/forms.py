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
    """The ``tinyfront search`` arguments for ``form``, or the first problem as ConfigError / DataError.

    ``storage`` is checked (an existing study of the same name) but not among the arguments: the
    search gets it as ``$TINYFRONT_STORAGE`` (:func:`explorer.app.launcher.launch`).
    """
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
    # no --storage: a command line is readable by every user (ps); launch() passes the URL in the environment
    argv = ["search", "--target", own.name, "--study", study]
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


#: Whole-number fields of the Run section: label -> (lowest, highest).
RUN_LIMITS: dict[str, tuple[int, int]] = {
    "trials": (1, MAX_TRIALS),
    "workers": (1, MAX_WORKERS),
    "epochs": (1, MAX_EPOCHS),
    "fine-tune epochs": (0, MAX_EPOCHS),
    "seed": (0, 2**31 - 1),
}


def number_problems(values: dict[str, float]) -> list[str]:
    """What is wrong with the form's typed numbers (``values``: label -> value), one sentence each.

    The inputs take any number (a bounded Streamlit input keeps its old value when a typed one is
    out of range, and the launch would silently use it); this says what is wrong, before Launch.
    """
    problems = []
    for label, (low, high) in RUN_LIMITS.items():
        if label not in values:
            continue
        value = values[label]
        if value != int(value) or not low <= value <= high:
            problems.append(f"{label} must be a whole number from {low:,} to {high:,}, got {value:g}")
    for label in ("width min", "width max"):
        if label in values and not 0 < values[label] <= 4.0:
            problems.append(f"{label} must be > 0 and <= 4, got {values[label]:g}")
    for label in ("sparsity min", "sparsity max"):
        if label in values and not 0 <= values[label] < 1.0:
            problems.append(f"{label} must be >= 0 and < 1, got {values[label]:g}")
    for label in ("width step", "sparsity step"):
        if label in values and values[label] < 0:
            problems.append(f"{label} must be >= 0 (0 = continuous), got {values[label]:g}")
    return problems


_FLAGS = {
    "--trials": "f_trials",
    "--workers": "f_workers",
    "--epochs": "f_epochs",
    "--finetune-epochs": "f_finetune",
    "--seed": "f_seed",
    "--sampler": "f_sampler",
    "--family": "f_family",
    "--width-min": "f_wmin",
    "--width-max": "f_wmax",
    "--width-step": "f_wstep",
    "--sparsity-min": "f_smin",
    "--sparsity-max": "f_smax",
    "--sparsity-step": "f_sstep",
}
_INTS = {"f_trials", "f_workers", "f_epochs", "f_finetune", "f_seed"}


def widgets_from_argv(argv: list[str], targets: dict[str, Target]) -> dict[str, object]:
    """The Search form's widget values (session keys) that reproduce a recorded ``tinyfront search`` command.

    Used after a reload so the form shows the running search's settings. Flags this form does
    not have are ignored; an unknown target gives {}.
    """
    opts: dict[str, str] = {}
    for i, word in enumerate(argv):
        if word.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            opts[word] = argv[i + 1]
    target = targets.get(opts.get("--target", ""))
    if target is None:
        return {}
    family = opts.get("--family", "mobilenet_v1")
    out: dict[str, object] = {"f_target": target.name}
    for flag, key in _FLAGS.items():
        if flag in opts:
            out[key] = (
                int(opts[flag])
                if key in _INTS
                else (opts[flag] if key in ("f_sampler", "f_family") else float(opts[flag]))
            )
    out[f"f_study_{target.name}_{family}"] = opts.get("--study", "")
    out[f"f_flash_{target.name}"] = float(opts.get("--flash-budget", target.flash_budget_kb))
    out[f"f_sram_{target.name}"] = float(opts.get("--sram-budget", target.sram_budget_kb))
    out[f"f_latency_{target.name}"] = float(opts.get("--latency-budget", target.latency_budget_ms))
    if "--precisions" in opts:
        out[f"f_prec_{target.runtime}"] = opts["--precisions"].split(",")
    if "--objectives" in opts:
        out["f_obj"] = opts["--objectives"].split(",")
    if "--data" in opts:
        out["f_data_kind"] = "path"
        data = Path(opts["--data"])
        out["f_data_path"] = str(data.relative_to(workdir())) if data.is_relative_to(workdir()) else str(data)
    return out


def duration_estimate(storage: str, study: str, trials: int, workers: int) -> tuple[float, str] | None:
    """Seconds the search will take, and from what: the study's own finished trials when resuming,
    else the finished trials of the other studies in ``storage``; None when nothing has finished yet."""
    import statistics

    import optuna
    from optuna.trial import TrialState

    from explorer.app.state import list_studies
    from search.storage import make_storage

    names = list_studies(storage)
    if not names:
        return None
    st = make_storage(storage)

    def times(name: str) -> list[float]:
        loaded = optuna.load_study(study_name=name, storage=st)
        return [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.datetime_start and t.datetime_complete and not t.user_attrs.get("duplicate_of")
        ]

    own = times(study) if study in names else []
    source = f"median of this study's {len(own)} finished trials"
    if not own:
        own = [s for n in names[:5] if n != study for s in times(n)]
        source = f"median of {len(own)} finished trials of other studies here (other settings: a rough guide)"
    if not own:
        return None
    per_trial = statistics.median(own)
    return per_trial * trials / max(1, workers), f"{source}: {per_trial:,.0f} s per trial"
