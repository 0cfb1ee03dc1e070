"""The garbage collection Optuna runs after every trial, with and without the objects alive before
the trials frozen (``search.workers.frozen_heap``).

A worker process with TensorFlow, Keras, tfmot and Optuna imported holds some 400,000 objects, and
``gc.collect()`` walks them all. This script builds three real candidates in one process (as a worker
does, with the objects alive before them frozen), then times ``gc.collect()`` ``--repeat`` times with
them frozen and again with nothing frozen, and prints p50 / p99 of each and what the difference is
against one candidate's build.

    python benchmarks/gc_pause.py                   # digits, mobilenet_v1 0.25, 2 candidates
    python benchmarks/gc_pause.py --data bench:kws --family ds_cnn
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from search import _lazy  # noqa: E402
from search.result import CandidateSpec  # noqa: E402
from search.targets import get_target  # noqa: E402


def collections(repeat: int) -> list[float]:
    """Seconds of ``repeat`` full collections, each after a small cyclic garbage is dropped."""
    seconds = []
    for _ in range(repeat):
        junk: list[object] = []
        junk.append(junk)
        del junk
        t0 = time.perf_counter()
        gc.collect()
        seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="dataset spec (default: the digits demo)")
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--target", default="nucleo-f446re")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()

    from search.candidate import evaluate_candidate
    from search.data import load_dataset

    _lazy.tfmot()
    data = load_dataset(args.data)
    target = get_target(args.target)
    gc.collect()
    gc.freeze()  # as a worker does before its first trial: only what lives now is left out
    frozen_count = gc.get_freeze_count()
    candidate_seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sparsity, precision) in enumerate([(0.0, "int8"), (0.5, "int8"), (0.6, "int8")]):
            spec = CandidateSpec(family=args.family, width=args.width, sparsity=sparsity, precision=precision)
            t0 = time.perf_counter()
            evaluate_candidate(spec, target, data, Path(tmp) / f"c{i}", cache_dir=Path(tmp) / "cache")
            candidate_seconds.append(time.perf_counter() - t0)
    frozen = collections(args.repeat)
    gc.unfreeze()
    plain = collections(args.repeat)
    objects = len(gc.get_objects())

    def ms(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000

    print(f"{args.family} {args.width} on {args.data or 'digits'}, {objects:,} objects tracked after 3 candidates")
    print(f"gc.collect(), {args.repeat} calls each, p50 / p99:")
    print(f"  nothing frozen:                  {ms(plain, 50):8.2f} / {ms(plain, 99):8.2f} ms")
    print(f"  {frozen_count:>9,} objects frozen: {ms(frozen, 50):8.2f} / {ms(frozen, 99):8.2f} ms (before the trials)")
    saved = (ms(plain, 50) - ms(frozen, 50)) / 1000
    print(
        f"saved per trial: {saved * 1000:.0f} ms, against the last candidate's own build here (pruned, base model "
        f"and pruning session reused, search defaults: {candidate_seconds[-1]:.2f} s): "
        f"{saved / candidate_seconds[-1]:.1%}"
    )


if __name__ == "__main__":
    main()
