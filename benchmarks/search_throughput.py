"""Search throughput: trials per minute with 1 and 2 workers, and the time base-model reuse saves.

1. Workers: the same real study (``search.workers.run_search``: training, pruning, conversion,
   measurement) run on a fresh SQLite storage with 1 worker (in a fresh process, as ``tinyfront
   search`` runs it), then with 2 worker processes (each
   with TensorFlow thread pools of cores / 2, ``search.workers.worker_threads``), and with
   ``--postgres URL`` 2 workers through PostgreSQL; trials per minute = trials / wall time
   (process start-up included), and in steady state (from the first trial's end to the last's).
   A repeat of an earlier trial's point is served from its record in about 0.1 s, and how many
   repeats a run draws depends on its sampler seeds (one worker draws the same sequence every run,
   two workers another); so the wall ratio is also printed counting built trials only, and
   ``--seed-per-run`` gives run N the study seed N in both modes. Each run
   also prints where its time went: before the first trial starts (imports, data, study), from
   the first trial's start to the last one's end, and after it (the workers' exit); and each build
   stage's seconds (train, prune, convert, measure) summed over its built trials, and the worker
   time per built trial (workers x the trials' span / built trials) split the same way: what two
   workers spend on a trial beyond what one spends is work each repeats (a width's base model
   trained by both, each one's pruning trace per width) or waits.
   ``--one-core`` adds one worker limited to one core (``TINYFRONT_THREADS=1``): two workers against
   it is the scaling per core, apart from what one worker gains from a second core.
2. Reuse: three precisions of one width (0.5, sparsity 0) evaluated with the base-model cache
   (trained once, reused by the other two) and without it (trained every time).

Everything is written under ``--out``. Prints figures and ratios; asserts nothing. The machine's
core count and load average are printed too: on a shared machine the figures move with the load.

    python benchmarks/search_throughput.py                 # 4 trials per run, epochs 1
    python benchmarks/search_throughput.py --trials 12 --epochs 3
    python benchmarks/search_throughput.py --trials 40 --epochs 3 --finetune-epochs 2 --repeat 3
    python benchmarks/search_throughput.py --data bench:kws --family ds_cnn --target nucleo-l4r5zi \
        --trials 60 --epochs 5 --finetune-epochs 2 --full-space --skip-reuse
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from search._lazy import THREADS_ENV  # noqa: E402
from search.result import CandidateSpec  # noqa: E402
from search.space import SearchSpace  # noqa: E402
from search.study import StudyConfig  # noqa: E402
from search.targets import get_target  # noqa: E402

ONE_CORE = "1 worker on one core"


class Run(NamedTuple):
    """One fresh study run with some workers."""

    seconds: float  # wall time, process start to the search's return
    steady: float  # trials finished between the first trial's end and the last one's, per minute of that span
    trials: int
    built: int  # not a repeat of an earlier trial's candidate (whose record is served)
    reused: int  # built trials that started from pruned weights kept by an earlier trial
    before: float  # seconds from the start to the first trial's start (imports, data, study)
    span: float  # seconds from the first trial's start to the last trial's end
    after: float  # seconds from the last trial's end to the search's return (the workers' exit)
    stages: dict[str, float]  # each build stage's seconds, summed over the built trials
    workers: int

    def per_built_trial(self) -> str:
        """Worker seconds per built trial (workers x span / built), split by stage, the rest "other"."""
        if not self.built:
            return "no built trials"
        total = self.workers * self.span / self.built
        parts = {stage: spent / self.built for stage, spent in self.stages.items()}
        parts["other"] = total - sum(parts.values())
        return f"{total:.2f} s (" + ", ".join(f"{stage} {spent:.2f}" for stage, spent in parts.items()) + ")"

    @property
    def per_minute(self) -> float:
        """Trials per minute of wall time (start-up included)."""
        return self.trials / self.seconds * 60

    @property
    def built_per_minute(self) -> float:
        """Built trials per minute of wall time (repeats served from an earlier record left out)."""
        return self.built / self.seconds * 60


def _ratios(run: Run, one: Run) -> tuple[float, float, float]:
    """(wall, steady state, wall counting built trials only) of ``run`` against the one-worker ``one``."""
    return run.per_minute / one.per_minute, run.steady / one.steady, run.built_per_minute / one.built_per_minute


def run_workers(
    args: argparse.Namespace,
    out: Path,
    workers: int,
    storage: str | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> Run:
    """One fresh study run with ``workers`` (steady state excludes TensorFlow's start-up and the first
    base model's training); ``threads`` sets ``TINYFRONT_THREADS`` for the one-worker process."""
    from search.workers import run_search

    folder = out / f"workers-{workers}{'-pg' if storage else ''}{f'-threads-{threads}' if threads else ''}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = StudyConfig(
        target=get_target(args.target),
        study_name=f"throughput-{workers}-{int(time.time())}",
        storage=storage or f"sqlite:///{folder / 'study.db'}",
        data=args.data,
        family=args.family,
        space=SearchSpace()
        if args.full_space
        else SearchSpace(width_min=0.25, width_max=0.5, precisions=("int8", "float32", "int16x8")),
        sampler="random",
        seed=seed,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        artifacts_root=str(folder / "artifacts"),
        early_stop=False,  # every trial a full build: this measures workers, not the rule (benchmarks/early_stop.py)
    )
    began = datetime.datetime.now()  # Optuna stamps trials with naive local time
    start = time.perf_counter()
    if workers == 1:
        # A fresh process, as `tinyfront search` is: it imports TensorFlow and traces everything itself.
        # In this process a repeat would reuse the first run's import and pruning sessions.
        proc = multiprocessing.get_context("spawn").Process(target=run_search, args=(config, args.trials, 1))
        # the spawned process reads TINYFRONT_THREADS before importing TensorFlow; put back after its start
        with mock.patch.dict(os.environ, {THREADS_ENV: str(threads)} if threads else {}):
            proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"the 1-worker search failed (exit {proc.exitcode})")
        seconds = time.perf_counter() - start
        study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    else:
        study = run_search(config, args.trials, workers)
        seconds = time.perf_counter() - start
    ends = sorted(t.datetime_complete for t in study.trials if t.datetime_complete is not None)
    starts = sorted(t.datetime_start for t in study.trials if t.datetime_start is not None)
    steady_span = (ends[-1] - ends[0]).total_seconds() if len(ends) > 1 else 0.0
    steady = (len(ends) - 1) / steady_span * 60 if steady_span > 0 else float("nan")
    built = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    reused = sum(bool(t.user_attrs.get("result", {}).get("reused_pruning")) for t in built)
    stages: dict[str, float] = {}
    for t in built:
        for stage, spent in (t.user_attrs.get("result", {}).get("stage_seconds") or {}).items():
            stages[stage] = stages.get(stage, 0.0) + spent
    ended = began + datetime.timedelta(seconds=seconds)
    return Run(
        seconds=seconds,
        steady=steady,
        trials=len(study.trials),
        built=len(built),
        reused=reused,
        before=(starts[0] - began).total_seconds(),
        span=(ends[-1] - starts[0]).total_seconds(),
        after=(ended - ends[-1]).total_seconds(),
        stages=stages,
        workers=workers,
    )


def reuse(args: argparse.Namespace, out: Path) -> tuple[float, float, int]:
    from search.candidate import evaluate_candidate
    from search.data import load_dataset

    data = load_dataset(None)
    target = get_target(args.target)
    variants = [(0.0, p) for p in ("int8", "float32", "int16x8")]
    totals = []
    for cached in (True, False):
        folder = out / ("reuse-cached" if cached else "reuse-uncached")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        for i, (s, p) in enumerate(variants):
            spec = CandidateSpec(
                family=args.family, width=0.5, sparsity=s, precision=p, epochs=args.epochs,
                finetune_epochs=args.finetune_epochs,
            )  # fmt: skip
            res = evaluate_candidate(
                spec, target, data, folder / f"v{i}", cache_dir=folder / "base_models" if cached else None
            )
            assert res.reused_base == (cached and i > 0)
        totals.append(time.perf_counter() - start)
    return totals[0], totals[1], len(variants)


def _spread(values: list[float]) -> str:
    """``x<median> (x<min>-x<max>)``."""
    ordered = sorted(values)
    return f"x{statistics.median(ordered):.2f} (x{ordered[0]:.2f}-x{ordered[-1]:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nucleo-f446re")
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--data", default=None, help="dataset spec (default: the digits demo; bench:kws, bench:vww)")
    ap.add_argument(
        "--postgres", metavar="URL", help="also run 2 workers through this PostgreSQL storage (postgresql://...)"
    )
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--out", default="tinyfront_bench/search_throughput")
    ap.add_argument("--repeat", type=int, default=1, help="run the worker comparison this many times (medians printed)")
    ap.add_argument(
        "--full-space",
        action="store_true",
        help="search the default space (4 widths, 9 sparsities, every precision of the target) instead of "
        "widths 0.25-0.5 at int8, float32 and int16x8",
    )
    ap.add_argument(
        "--seed-per-run",
        action="store_true",
        help="run N (from 0) uses study seed N, for one worker and two alike (default: seed 0 every run, so one "
        "worker draws the same points every run)",
    )
    ap.add_argument(
        "--one-core",
        action="store_true",
        help="also run one worker limited to one core (TINYFRONT_THREADS=1), and compare two workers with it",
    )
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-reuse", action="store_true")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    print(
        f"family {args.family}, epochs {args.epochs}, fine-tune epochs {args.finetune_epochs}, target {args.target}, "
        f"{'default space' if args.full_space else 'widths 0.25-0.5, int8 / float32 / int16x8'}"
    )
    if not args.skip_workers:
        runs: list[tuple[str, int, str | None, int | None]] = [
            ("1 worker, SQLite", 1, None, None),
            ("2 workers, SQLite", 2, None, None),
        ]
        if args.postgres:
            runs.append(("2 workers, PostgreSQL", 2, args.postgres, None))
        if args.one_core:
            runs.insert(1, (ONE_CORE, 1, None, 1))
        ratios: dict[str, list[tuple[float, float, float]]] = {label: [] for label, workers, *_ in runs if workers > 1}
        per_core: list[float] = []
        for repeat in range(max(1, args.repeat)):
            done: dict[str, Run] = {}
            for label, workers, storage, threads in runs:
                seed = repeat if args.seed_per_run else 0
                run = done[label] = run_workers(args, out, workers, storage, seed=seed, threads=threads)
                print(
                    f"run {repeat + 1}: {label:22s}: {run.trials} trials in {run.seconds:6.1f} s = "
                    f"{run.per_minute:5.2f} trials/min wall (start-up included), {run.steady:5.2f} trials/min "
                    f"steady state; {run.built} built ({run.reused} from kept pruned weights), "
                    f"{run.trials - run.built} repeats served; {run.before:.2f} s before the first trial, "
                    f"{run.span:.2f} s of trials, {run.after:.2f} s after the last; stages summed over the built "
                    "trials: "
                    + ", ".join(f"{stage} {spent:.1f} s" for stage, spent in run.stages.items())
                    + f"; worker time per built trial {run.per_built_trial()}"
                )
            one = done["1 worker, SQLite"]
            if args.one_core:
                two, alone = done["2 workers, SQLite"], done[ONE_CORE]
                per_core.append(two.per_minute / alone.per_minute)
                print(
                    f"run {repeat + 1}: 2 workers, SQLite / {ONE_CORE}: x{per_core[-1]:.2f} wall, "
                    f"x{two.built_per_minute / alone.built_per_minute:.2f} counting built trials only; "
                    f"{ONE_CORE} / 1 worker: x{alone.per_minute / one.per_minute:.2f} wall"
                )
            for label, run in done.items():
                if label not in ("1 worker, SQLite", ONE_CORE):
                    wall, steady, built = _ratios(run, one)
                    ratios[label].append((wall, steady, built))
                    print(
                        f"run {repeat + 1}: {label} / 1 worker: x{wall:.2f} wall, x{steady:.2f} steady state, "
                        f"x{built:.2f} wall counting built trials only"
                    )
        if args.repeat > 1:
            if per_core:
                print(f"2 workers, SQLite / {ONE_CORE} over {len(per_core)} runs: wall median {_spread(per_core)}")
            for label, triples in ratios.items():
                walls, steadies, builts = (list(column) for column in zip(*triples, strict=True))
                print(
                    f"{label} / 1 worker over {len(triples)} runs: wall median {_spread(walls)}, "
                    f"steady state median {_spread(steadies)}, built trials only median {_spread(builts)}"
                )
    if not args.skip_reuse:
        cached, uncached, n = reuse(args, out)
        print(
            f"{n} variants of one width: {cached:.1f} s with base-model reuse, {uncached:.1f} s retraining each; "
            f"reuse saves {(uncached - cached) / uncached:.0%} "
            f"({(uncached - cached) / (n - 1):.1f} s per reused variant)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
