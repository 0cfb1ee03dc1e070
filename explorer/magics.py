"""IPython magics: the notebook face of tinyfront (``%load_ext explorer``).

``%tinyfront <subcommand> ...`` takes the same arguments as the CLI (the sub-command parsers are the
CLI's own ``register`` functions) and returns objects instead of printing:

- ``search``  -> :class:`SearchSummary` (the study's front as a DataFrame, its report, interrupted?);
  ``--data`` also accepts a notebook variable holding ``(x, y)`` arrays or a dict with ``x`` / ``y``;
  ``--family`` also accepts a name registered with ``%%tinyfront_family``;
- ``front`` / ``recheck`` -> pandas DataFrame of the feasible front (every trial with ``--all``),
  the plotly front figure is displayed inline when running in a Jupyter kernel;
- ``plot``    -> the plotly Figure of a study's trials and front;
- ``show``    -> the trial's :class:`~search.result.CandidateResult`;
- ``export``  -> the :class:`~firmware_export.BundleInfo` of the written zip;
- ``targets`` -> DataFrame of the boards and their budgets.

``%%tinyfront_family NAME`` runs a cell defining ``build(input_shape, num_classes, width)`` (returning a
tf_keras model), writes it to ``.tinyfront/families/tinyfront_family_NAME.py`` in the working folder and
puts that folder on ``sys.path`` and ``PYTHONPATH`` so worker processes import the same builder.

Every :class:`~search.errors.TinyfrontError` and argument error becomes one-line ``UsageError``. A
kernel interrupt during a search stops it: finished trials stay in the storage, the interrupted
trial of this process is marked FAIL, and re-running the same line resumes the study.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import ArgDecorator, MagicArgumentParser, magic_arguments, parse_argstring

from explorer.commands._args import add_storage_argument, resolve_storage, study_name
from explorer.notebook_views import (
    FIGURES,
    SearchSummary,
    candidate_pretty,
    display_figure,
    front_figure,
    front_frame,
)
from explorer.processes import pid_alive
from explorer.progress import search_progress
from search.errors import TinyfrontError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from search.front import FrontReport
    from search.study import StudyConfig

#: Folder (under the working folder) holding ``%%tinyfront_family`` modules and notebook datasets.
STATE_DIR = ".tinyfront"
FAMILY_PREFIX = "tinyfront_family_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class _Parser(MagicArgumentParser):
    """A magic's parser: ``-h`` prints help, every argument error is a one-line ``UsageError``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("add_help", True)
        super().__init__(**kwargs)

    def error(self, message: str) -> Any:
        raise UsageError(f"%{self.prog}: {' '.join(message.split())}")


class _subcommands(ArgDecorator):  # noqa: N801 - named like IPython's argument decorators
    """Add the CLI's sub-command parsers (plus magic-only ones) to the magic's parser."""

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> None:
        from explorer.commands import export, front, recheck, search, targets

        sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
        sub.required = True
        for module in (search, front, recheck, export, targets):
            module.register(sub)
        for name, p in sub.choices.items():
            p.prog = f"tinyfront {name}"
        _set_help(
            sub.choices["search"],
            "data",
            "'demo' (default), a .npz file, an image folder, or a notebook "
            "variable holding (x, y) arrays or a dict with x and y",
        )
        _set_help(
            sub.choices["search"], "family", "mobilenet_v1, ds_cnn, a %%%%tinyfront_family name or module:function"
        )
        for name in ("front", "recheck"):
            sub.choices[name].add_argument("--no-plot", action="store_true", help="do not display the front figure")
        show = sub.add_parser("show", help="one trial's full result (CandidateResult)")
        plot = sub.add_parser("plot", help="the plotly figure of a study's trials and feasible front")
        for p, name in ((show, "show"), (plot, "plot")):
            p.prog = f"tinyfront {name}"
            p.add_argument("--study", required=True, type=study_name, help="study name")
            add_storage_argument(p)
        show.add_argument("--trial", type=int, required=True, help="trial number")
        plot.add_argument("--x", default="latency_ms", choices=list(FIGURES), help="x axis (default: latency_ms)")
        plot.add_argument("--y", default="accuracy", choices=list(FIGURES), help="y axis (default: accuracy)")
        parser.set_defaults(_subparsers=sub)


def _set_help(p: argparse.ArgumentParser, dest: str, text: str) -> None:
    for action in p._actions:
        if action.dest == dest:
            action.help = text


def _full_help(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``%tinyfront?`` show the help of every sub-command, not only their names."""
    parser = func.parser  # type: ignore[attr-defined]
    sub = parser.get_default("_subparsers")
    parts = [parser.format_help()] + [p.format_help() for p in dict(sub.choices).values()]
    func.__doc__ = "\n".join(parts)
    return func


@dataclass
class RegisteredFamily:
    """A model family defined in a notebook cell: its name, ``module:function`` spec and module file."""

    name: str
    spec: str
    path: Path


def _fail_orphans(storage: str, study_name: str) -> int:
    """Mark FAIL the RUNNING trials of this process or of dead processes on this host; return how many.

    No ``fail_reason`` is recorded, so they read as interrupted and do not use up the trial budget.
    """
    import optuna
    from optuna.trial import TrialState

    from search.storage import make_storage

    st = make_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=st)
    except KeyError:  # interrupted before the study was created
        return 0
    host, count = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if who != host or not pid.isdigit() or (int(pid) != os.getpid() and pid_alive(int(pid))):
            continue
        st.set_trial_state_values(t._trial_id, TrialState.FAIL)
        count += 1
    return count


def _exists(config: StudyConfig) -> bool:
    import optuna

    from search.storage import make_storage

    names = {s.study_name for s in optuna.get_all_study_summaries(make_storage(config.storage))}
    return bool(config.study_name in names)


def _arrays(value: object, name: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """``x, y, class_names`` from a notebook variable holding ``(x, y)`` or a dict with ``x`` and ``y``."""
    from search.errors import DataError

    if isinstance(value, tuple | list) and len(value) == 2:
        return np.asarray(value[0]), np.asarray(value[1]), None
    if isinstance(value, dict) and "x" in value and "y" in value:
        names = value.get("class_names")
        return np.asarray(value["x"]), np.asarray(value["y"]), None if names is None else [str(n) for n in names]
    found = f"a dict with keys {', '.join(map(str, value))}" if isinstance(value, dict) else type(value).__name__
    raise DataError(f"expected variable '{name}' to hold (x, y) arrays or a dict with keys x and y, found {found}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@magics_class
class TinyfrontMagics(Magics):
    """``%tinyfront`` (search, front, recheck, plot, show, export, targets) and ``%%tinyfront_family``."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self.families: dict[str, RegisteredFamily] = {}

    @line_magic
    @_full_help
    @magic_arguments()
    @_subcommands()
    def tinyfront(self, line: str = "") -> Any:
        """Search, inspect and export tinyfront studies from a notebook (arguments as in the ``tinyfront`` CLI)."""
        try:
            args = parse_argstring(TinyfrontMagics.tinyfront, line)
        except SystemExit:  # -h / --help printed the help
            return None
        except UsageError as exc:  # the top-level parser is IPython's: name the magic and point to the help
            text = str(exc)
            raise UsageError(text if text.startswith("%") else f"%tinyfront: {text} (see %tinyfront?)") from None
        handler: Callable[[argparse.Namespace], Any] = getattr(self, f"_{args.command}")
        try:
            resolve_storage(args)
            return handler(args)
        except TinyfrontError as exc:
            raise UsageError(f"%tinyfront {args.command}: {_one_line(exc)}") from None

    @cell_magic
    def tinyfront_family(self, line: str, cell: str) -> RegisteredFamily:
        """%%tinyfront_family NAME: the cell defines ``build(input_shape, num_classes, width)`` returning a
        tf_keras model; ``%tinyfront search --family NAME`` then searches it (worker processes too)."""
        from search.families import FAMILIES

        name = line.strip()
        if not _NAME.match(name):
            raise UsageError(f"%%tinyfront_family NAME: NAME must be a Python identifier, got {name!r}")
        if name in FAMILIES:
            raise UsageError(f"%%tinyfront_family: {name!r} is a built-in family; pick another name")
        folder = Path.cwd() / STATE_DIR / "families"
        folder.mkdir(parents=True, exist_ok=True)
        module = FAMILY_PREFIX + name
        path = folder / f"{module}.py"
        previous = path.read_text() if path.is_file() else None
        path.write_text(f"# tinyfront family {name!r}, written by %%tinyfront_family\n{cell}")
        cached = Path(importlib.util.cache_from_source(str(path)))
        cached.unlink(missing_ok=True)  # a stale .pyc could survive a same-second, same-size redefinition
        _activate(folder)
        sys.modules.pop(module, None)
        importlib.invalidate_caches()
        try:
            build = getattr(importlib.import_module(module), "build", None)
            if not callable(build):
                raise UsageError(f"%%tinyfront_family {name}: the cell must define a function build(...)")
            try:
                inspect.signature(build).bind(None, None, None)
            except TypeError:
                raise UsageError(
                    f"%%tinyfront_family {name}: build must take (input_shape, num_classes, width), "
                    f"found build{inspect.signature(build)}"
                ) from None
        except Exception as exc:
            sys.modules.pop(module, None)
            path.unlink()
            if previous is not None:
                path.write_text(previous)
            if isinstance(exc, UsageError):
                raise
            raise UsageError(
                f"%%tinyfront_family {name}: the cell failed: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        family = RegisteredFamily(name=name, spec=f"{module}:build", path=path)
        self.families[name] = family
        return family

    # -------------------------------------------------------------------------------- sub-commands

    def _search(self, args: argparse.Namespace) -> SearchSummary:
        import optuna

        from explorer.commands.search import config_from_args
        from search.front import load_front
        from search.workers import run_search

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        family, label = self._family(args.family)
        data, dataset = self._data(args.data)
        config = config_from_args(args, family=family, data=data, label=label)
        start, interrupted = time.monotonic(), False
        with search_progress(args.trials, config.study_name, notebook=True) as (on_progress, on_stage):
            try:
                run_search(config, args.trials, args.workers, dataset=dataset, progress=on_progress, stage=on_stage)
            except KeyboardInterrupt:
                interrupted = True
        if interrupted and not _fail_orphans(config.storage, config.study_name) and not _exists(config):
            raise UsageError(f"%tinyfront search: interrupted before study '{config.study_name}' was created")
        report = load_front(config.storage, config.study_name)
        states = [r.state for r in report.trials]
        return SearchSummary(
            study_name=config.study_name,
            storage=config.storage,
            trials=len(states),
            complete=states.count("COMPLETE"),
            failed=states.count("FAIL"),
            stopped=states.count("PRUNED"),
            feasible=report.feasible_count,
            interrupted=interrupted,
            seconds=time.monotonic() - start,
            report=report,
            front=front_frame(report),
        )

    def _front(self, args: argparse.Namespace) -> Any:
        from search.front import load_front
        from search.targets import get_target

        target = get_target(args.target, args.targets) if args.target else None
        return self._report(load_front(args.storage, args.study, target), args)

    def _recheck(self, args: argparse.Namespace) -> Any:
        from search.front import recheck
        from search.targets import get_target

        return self._report(recheck(args.storage, args.study, get_target(args.target, args.targets)), args)

    def _report(self, report: FrontReport, args: argparse.Namespace) -> Any:
        if args.json:
            return report.to_dict()
        if not args.no_plot and getattr(self.shell, "kernel", None) is not None:  # a Jupyter kernel, not a terminal
            display_figure(front_figure(report))
        return front_frame(report, all_trials=args.all)

    def _plot(self, args: argparse.Namespace) -> go.Figure:
        from search.front import load_front

        return front_figure(load_front(args.storage, args.study), x=args.x, y=args.y)

    def _show(self, args: argparse.Namespace) -> Any:
        from search.errors import CandidateError, ConfigError
        from search.result import CandidateResult
        from search.storage import fail_reason, load_existing_study

        study = load_existing_study(args.storage, args.study)
        trials = study.get_trials(deepcopy=False)
        found = [t for t in trials if t.number == args.trial]
        if not found:
            raise ConfigError(f"study '{args.study}' has no trial {args.trial}; it has {len(trials)} trials from 0")
        trial = found[0]
        if "result" not in trial.user_attrs:
            reason = fail_reason(trial) or trial.user_attrs.get("stop_reason")
            why = f": {reason}" if reason else ""
            raise CandidateError(f"trial {args.trial} is {trial.state.name} and has no result{why}")
        return CandidateResult.from_dict(trial.user_attrs["result"])

    def _export(self, args: argparse.Namespace) -> Any:
        from firmware_export import export_tflite_file, export_trial
        from search.storage import load_existing_study
        from search.targets import get_target

        if args.study is not None:
            if args.trial is None:
                raise UsageError("%tinyfront export: --study needs --trial N")
            if args.target is not None:
                raise UsageError("%tinyfront export: --target goes with --tflite; a trial's target is its study's")
            load_existing_study(args.storage, args.study)  # read-only check first: creates nothing
            return export_trial(args.storage, args.study, args.trial, args.output, fmt=args.fmt, force=args.force)
        if args.trial is not None:
            raise UsageError("%tinyfront export: --trial goes with --study")
        target = get_target(args.target, args.targets) if args.target else None
        return export_tflite_file(args.tflite, args.output, fmt=args.fmt, target=target, force=args.force)

    def _targets(self, args: argparse.Namespace) -> pd.DataFrame:
        import pandas as pd

        from search.targets import load_targets

        keys = ("description", "core", "clock_mhz", "flash_kb", "sram_kb", "runtime")
        rows = [
            {
                "target": t.name,
                **{k: getattr(t, k) for k in keys},
                "model_flash_kb": t.flash_budget_kb,
                "model_sram_kb": t.sram_budget_kb,
                "latency_budget_ms": t.latency_budget_ms,
            }
            for t in load_targets(args.targets).values()
        ]
        return pd.DataFrame(rows).set_index("target")

    # -------------------------------------------------------------------------------- helpers

    def _family(self, family: str) -> tuple[str, str]:
        """``(family spec for the study, label for the default study name)``."""
        from search.families import FAMILIES

        if family in FAMILIES:
            return family, family
        registered = self.families.get(family)
        path = Path.cwd() / STATE_DIR / "families" / f"{FAMILY_PREFIX}{family}.py"
        if registered is None and _NAME.match(family) and path.is_file():  # defined in an earlier session
            registered = RegisteredFamily(family, f"{FAMILY_PREFIX}{family}:build", path)
        if registered is not None:
            _activate(registered.path.parent)
            return registered.spec, family
        if ":" not in family:
            known = ", ".join([*FAMILIES, *self.families]) or "none"
            raise UsageError(
                f"%tinyfront search: unknown family {family!r}; expected one of {known}, a name defined with "
                "%%tinyfront_family, or module:function"
            )
        return family, family.replace(":", ".")

    def _data(self, spec: str | None) -> tuple[str | None, Any]:
        """``(dataset spec for the study, Dataset already loaded or None)`` for ``--data``."""
        if spec is None or not _NAME.match(spec) or spec in ("demo",):
            return spec, None
        ns = self.shell.user_ns if self.shell is not None else {}
        if spec not in ns:
            if Path(spec).exists():
                return spec, None
            raise UsageError(
                f"%tinyfront search: --data {spec}: no notebook variable and no file or folder of that name; "
                "expected a variable holding (x, y) arrays or a dict with x and y, 'demo', a .npz file or a folder"
            )
        from search.data import from_arrays

        x, y, names = _arrays(ns[spec], spec)
        dataset = from_arrays(x, y, name=f"notebook:{spec}", class_names=names)
        folder = Path.cwd() / STATE_DIR / "data"
        path = folder / f"{spec}-{dataset.fingerprint}.npz"
        if not path.is_file():  # worker processes (and `tinyfront worker`) load the same arrays from here
            folder.mkdir(parents=True, exist_ok=True)
            extra = {} if names is None else {"class_names": np.asarray(names, dtype=str)}
            tmp = path.with_name(path.stem + ".partial.npz")
            np.savez(tmp, x=x, y=y, **extra)  # type: ignore[arg-type]
            tmp.replace(path)
        return str(path), dataset


def _activate(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path`` (this kernel) and ``PYTHONPATH`` (processes it starts)."""
    text = str(folder)
    if text not in sys.path:
        sys.path.insert(0, text)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if text not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([text, *parts])


def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`TinyfrontMagics` and a compact display of ``CandidateResult``."""
    ipython.register_magics(TinyfrontMagics)
    ipython.display_formatter.formatters["text/plain"].for_type_by_name(
        "search.result", "CandidateResult", candidate_pretty
    )
