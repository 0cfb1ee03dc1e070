"""``tinyfront recheck``: judge a finished study against another target without retraining.

Flash, SRAM and latency of every finished trial are re-derived from its stored artifacts for the
new target; accuracy is the stored one.
"""

from __future__ import annotations

import argparse
import json

from explorer.commands._args import add_storage_argument, study_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recheck", help="re-derive a study's figures and front for another target")
    p.add_argument("--study", required=True, type=study_name, help="study name")
    p.add_argument("--target", required=True, help="the other target (see `tinyfront targets`)")
    add_storage_argument(p)
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument("--all", action="store_true", help="list every trial, not only the front")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explorer.commands.front import render_report
    from search.front import recheck
    from search.targets import get_target

    report = recheck(args.storage, args.study, get_target(args.target, args.targets))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report, all_trials=args.all))
    return 0
