"""``tinyfront search``: run (or resume) an Optuna study of width x sparsity x precision on one target.

``--trials N`` is the study's total: re-running the same command after a stop or a crash resumes
the study and only runs what is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from explorer.commands._args import (
    add_storage_argument,
    finite_float,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    seed,
    study_name,
)
from explorer.progress import search_progress
from search.result import OBJECTIVES
from search.storage import GRACE_PERIOD, HEARTBEAT_INTERVAL
from search.study import DEFAULT_ARTIFACTS_ROOT, DEFAULT_OBJECTIVES, SAMPLERS

if TYPE_CHECKING:
    from search.space import SearchSpace
    from search.study import StudyConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search width, sparsity and precision against a target's budgets")
    p.add_argument("--target", required=True, help="target name (see `tinyfront targets`)")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument(
        "--data",
        help="dataset: .npz file, image folder, 'bench:kws' or 'bench:vww' (default: the built-in digits demo)",
    )
    p.add_argument("--family", default="mobilenet_v1", help="mobilenet_v1, ds_cnn or module:function")
    p.add_argument("--trials", type=positive_int, default=20, help="total trials in the study (default: 20)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine (default: 1)")
    p.add_argument("--study", type=study_name, help="study name (default: <target>-<family>)")
    add_storage_argument(p)
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe (constrained multivariate TPE)")
    p.add_argument("--seed", type=seed, default=0, help="sampler and training seed, 0 to 2**32-1 (default: 0)")
    add_space_arguments(p)
    p.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help=f"comma-separated subset of {','.join(OBJECTIVES)} (default: {','.join(DEFAULT_OBJECTIVES)})",
    )
    p.add_argument("--epochs", type=positive_int, default=5, help="training epochs of each base model (default: 5)")
    p.add_argument(
        "--finetune-epochs", type=nonnegative_int, default=2, help="pruning / QAT fine-tune epochs (default: 2)"
    )
    p.add_argument(
        "--flash-budget", type=positive_float, metavar="KIB", help="override the target's model flash budget (KiB)"
    )
    p.add_argument(
        "--sram-budget", type=positive_float, metavar="KIB", help="override the target's model SRAM budget (KiB)"
    )
    p.add_argument("--latency-budget", type=positive_float, metavar="MS", help="override the target's latency budget")
    p.add_argument("--artifacts", default=DEFAULT_ARTIFACTS_ROOT, help="artifacts root folder")
    p.add_argument(
        "--no-early-stop",
        dest="early_stop",
        action="store_false",
        help="build every candidate to the end, even one that cannot reach the front (see README)",
    )
    add_heartbeat_arguments(p)
    p.set_defaults(run=run)


def add_space_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width-min", type=finite_float, default=0.25)
    p.add_argument("--width-max", type=finite_float, default=1.0)
    p.add_argument(
        "--width-step", type=nonnegative_float, default=0.25, help="0 for a continuous range (default: 0.25)"
    )
    p.add_argument("--sparsity-min", type=finite_float, default=0.0)
    p.add_argument("--sparsity-max", type=finite_float, default=0.8)
    p.add_argument(
        "--sparsity-step", type=nonnegative_float, default=0.1, help="0 for a continuous range (default: 0.1)"
    )
    p.add_argument("--precisions", help="comma-separated (default: all the target's runtime supports)")
    p.add_argument("--resolutions", help="comma-separated input sides in pixels (default: the dataset's)")


def add_heartbeat_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heartbeat-interval", type=positive_int, default=HEARTBEAT_INTERVAL, help=argparse.SUPPRESS)
    p.add_argument("--grace-period", type=positive_int, default=GRACE_PERIOD, help=argparse.SUPPRESS)


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _space(args: argparse.Namespace) -> SearchSpace:
    from search.errors import ConfigError
    from search.space import SearchSpace

    resolutions = None
    if args.resolutions:
        try:
            resolutions = tuple(int(x) for x in _csv(args.resolutions) or ())
        except ValueError:
            raise ConfigError(f"--resolutions must be integers separated by commas, got {args.resolutions!r}") from None
    return SearchSpace(
        width_min=args.width_min,
        width_max=args.width_max,
        width_step=args.width_step or None,
        sparsity_min=args.sparsity_min,
        sparsity_max=args.sparsity_max,
        sparsity_step=args.sparsity_step or None,
        precisions=_csv(args.precisions),
        resolutions=resolutions,
    )


def config_from_args(
    args: argparse.Namespace, *, family: str | None = None, data: str | None = None, label: str | None = None
) -> StudyConfig:
    """The study the search arguments describe: one path for the CLI and the notebook magic, which
    passes its own resolved ``family`` (and its ``label`` for the default study name) and ``data``."""
    from search.study import StudyConfig
    from search.targets import get_target

    family = family or args.family
    target = get_target(args.target, args.targets).with_budgets(
        args.flash_budget, args.sram_budget, args.latency_budget
    )
    return StudyConfig(
        target=target,
        study_name=args.study or f"{target.name}-{label or family.replace(':', '.')}",
        storage=args.storage,
        data=args.data if data is None else data,
        family=family,
        space=_space(args),
        objectives=_csv(args.objectives) or (),
        sampler=args.sampler,
        seed=args.seed,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        artifacts_root=args.artifacts,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        early_stop=getattr(args, "early_stop", True),
    )


def run(args: argparse.Namespace) -> int:
    import optuna

    from explorer.commands.front import print_report
    from search.front import load_front
    from search.storage import display_url
    from search.workers import run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_args(args)
    where = display_url(config.storage)
    print(f"study {config.study_name} in {where} (artifacts: {config.study_dir()})", file=sys.stderr)
    with search_progress(args.trials, config.study_name) as (on_progress, on_stage):
        run_search(config, args.trials, args.workers, progress=on_progress, stage=on_stage)
    print_report(load_front(config.storage, config.study_name))
    return 0
