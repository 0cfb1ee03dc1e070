"""``tinyfront worker``: join an existing study from this process (on this or another machine).

Everything but the storage and study name is read from the study itself (target, dataset spec and
fingerprint, family, space, objectives, sampler, seed, training settings). The dataset must be
reachable here under the recorded spec (or ``--data``) and have the recorded fingerprint.
"""

from __future__ import annotations

import argparse
import sys

from explorer.commands._args import add_storage_argument, nonnegative_int, positive_int, study_name
from explorer.commands.search import add_heartbeat_arguments
from explorer.progress import search_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="join an existing study and run its trials (one process)")
    p.add_argument("--study", required=True, type=study_name, help="study name")
    add_storage_argument(p, fallback=None, what="Optuna storage URL shared by all workers")
    p.add_argument(
        "--trials", type=positive_int, help="total trials in the study (default: the budget the search recorded)"
    )
    p.add_argument("--data", help="dataset path on this machine, if it differs from the recorded one")
    p.add_argument("--artifacts", help="artifacts root on this machine (default: the recorded one)")
    p.add_argument(
        "--index", type=nonnegative_int, default=1, help="worker number, varies the sampler seed (default: 1)"
    )
    add_heartbeat_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import optuna

    from search.errors import ConfigError
    from search.storage import load_existing_study
    from search.study import config_from_study
    from search.workers import run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_study(
        args.storage,
        args.study,
        artifacts_root=args.artifacts,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
    )
    if args.data:
        config = replace(config, data=args.data)
    n_trials = args.trials
    if n_trials is None:
        study = load_existing_study(config.storage, args.study)
        if "n_trials" not in study.user_attrs:
            raise ConfigError(f"study '{args.study}' records no trial budget; pass --trials N")
        n_trials = int(study.user_attrs["n_trials"])
    print(f"worker {args.index} joins study {args.study} (target {config.target.name})", file=sys.stderr)
    with search_progress(n_trials, f"{args.study} worker {args.index}") as (on_progress, on_stage):
        run_worker(config, n_trials, index=args.index, progress=on_progress, stage=on_stage)
    return 0
