"""Search throughput: trials per minute with 1 and 2 workers, and the time base-model reuse saves.

1. Workers: the same real study (``search.workers.run_search``: training, pruning, conversion,
   measurement) run on a fresh SQLite storage with 1 worker, then with 2 worker processes;
   trials per minute = trials / wall time (process start-up included).
2. Reuse: three precisions of one width (0.5, sparsity 0) evaluated with the base-model cache
   (trained once, reused by the other two) and without it (trained every time).

Everything is written under ``--out``. Prints figures and ratios; asserts nothing. The machine's
core count and load average are printed too: on a shared machine the figures move with the load.

    python benchmarks/search_throughput.py                 # 4 trials per run, epochs 1
    python benchmarks/search_throughput.py --trials 12 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from search.result import CandidateSpec  # noqa: E402
from search.space import SearchSpace  # noqa: E402
from search.study import StudyConfig  # noqa: E402
from search.targets import get_target  # noqa: E402


def run_workers(args: argparse.Namespace, out: Path, workers: int) -> tuple[float, int]:
    from search.workers import run_search

    folder = out / f"workers-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = StudyConfig(
        target=get_target(args.target),
        study_name="throughput",
        storage=f"sqlite:///{folder / 'study.db'}",
        family=args.family,
        space=SearchSpace(width_min=0.25, width_max=0.5, precisions=("int8", "float32", "int16x8")),
        sampler="random",
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        artifacts_root=str(folder / "artifacts"),
    )
    start = time.perf_counter()
    study = run_search(config, args.trials, workers)
    seconds = time.perf_counter() - start
    return seconds, len(study.trials)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nucleo-f446re")
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--out", default="tinyfront_bench/search_throughput")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-reuse", action="store_true")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    print(f"family {args.family}, epochs {args.epochs}, fine-tune epochs {args.finetune_epochs}, target {args.target}")
    if not args.skip_workers:
        rates = {}
        for workers in (1, 2):
            seconds, n = run_workers(args, out, workers)
            rates[workers] = n / seconds * 60
            print(f"{workers} worker(s): {n} trials in {seconds:.1f} s = {rates[workers]:.2f} trials/min")
        print(f"2 workers / 1 worker: x{rates[2] / rates[1]:.2f}")
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
