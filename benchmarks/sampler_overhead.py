"""Sampler overhead per trial as a study grows (synthetic objectives, no training).

Runs tinyfront's samplers (``search.study.make_sampler``) over tinyfront's default search space
(``search.space.suggest``) with a cheap synthetic 3-objective function and three constraints,
and reports the wall time per trial (ask + suggest + tell, in-memory storage unless ``--storage``)
around trial 100 and trial 500. The synthetic objective only exercises the sampler; it stands in
for nothing in the product. Prints milliseconds per trial; asserts nothing.

    python benchmarks/sampler_overhead.py                  # 100 and 500 trials, in-memory storage
    python benchmarks/sampler_overhead.py --storage sqlite  # same on a temporary SQLite file
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from search.space import SearchSpace, suggest  # noqa: E402
from search.study import make_sampler  # noqa: E402
from search.targets import get_target  # noqa: E402

_BITS = {"float32": 32, "float16": 16, "int16x8": 16, "int8": 8, "int8_qat": 8}


def synthetic(trial: optuna.trial.Trial, space: SearchSpace) -> tuple[float, float, float]:
    """Accuracy-, latency- and flash-like numbers that trade off like the real ones (cheap)."""
    p = suggest(trial, space)
    w, s, bits = p["width"], p["sparsity"], _BITS[p["precision"]]
    acc = 0.6 + 0.35 * w - 0.3 * s**2 - (0.02 if bits == 8 else 0.0)
    latency = 40 * w**2 * (2.0 if bits == 32 else 1.0)
    flash = 1200 * w**2 * bits / 32
    for name, value in (("flash", flash - 384), ("sram", 60 * w - 96), ("latency", latency - 250)):
        trial.set_constraint(name, value)
    return acc, latency, flash


def measure(sampler: str, checkpoints: list[int], storage: str | None, window: int) -> dict[int, float]:
    space = SearchSpace().resolved(get_target("nucleo-f446re"))
    study = optuna.create_study(
        storage=storage, directions=["maximize", "minimize", "minimize"], sampler=make_sampler(sampler, 0)
    )
    per_trial: list[float] = []
    for _ in range(max(checkpoints)):
        start = time.perf_counter()
        trial = study.ask()
        values = synthetic(trial, space)
        study.tell(trial, values)
        per_trial.append(time.perf_counter() - start)
    return {n: statistics.median(per_trial[max(0, n - window) : n]) * 1000 for n in checkpoints}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", default="100,500", help="checkpoints (default: 100,500)")
    ap.add_argument("--window", type=int, default=10, help="median over the last N trials before each checkpoint")
    ap.add_argument("--samplers", default="tpe,nsga2,random")
    ap.add_argument("--storage", choices=("memory", "sqlite"), default="memory")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    checkpoints = [int(x) for x in args.trials.split(",")]
    print(f"ms per trial (ask + suggest + tell), median of the {args.window} trials before each checkpoint")
    print(f"storage: {args.storage}")
    print(f"{'sampler':8} " + " ".join(f"{'@' + str(n):>9}" for n in checkpoints) + "   growth")
    with tempfile.TemporaryDirectory() as tmp:
        for i, sampler in enumerate(args.samplers.split(",")):
            url = f"sqlite:///{Path(tmp) / f'{i}.db'}" if args.storage == "sqlite" else None
            ms = measure(sampler, checkpoints, url, args.window)
            growth = ms[checkpoints[-1]] / ms[checkpoints[0]] if ms[checkpoints[0]] > 0 else float("nan")
            print(f"{sampler:8} " + " ".join(f"{ms[n]:9.2f}" for n in checkpoints) + f"   x{growth:.1f}")


if __name__ == "__main__":
    main()
