"""Seconds per candidate on the demo dataset, split by stage (train, prune, qat, convert, measure).

Evaluates a handful of default-size candidates (mobilenet_v1, width 0.5, default epochs) for a
Cortex-M33 target, each with a fresh base model (no cache, so training is always counted), and
prints p50 / p99 of the total and of each stage. TensorFlow's one-off import is excluded and
printed separately. Goal from the issue: p50 <= 10 s on 2 cores.

    python benchmarks/candidate_speed.py [--n 5] [--target stm32l552]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="candidates to evaluate")
    parser.add_argument("--target", default="stm32l552")
    args = parser.parse_args()

    start = time.perf_counter()
    from search import _lazy

    _lazy.tensorflow()
    import_s = time.perf_counter() - start
    from search.candidate import evaluate_candidate
    from search.data import load_demo
    from search.result import CandidateSpec
    from search.targets import get_target

    target = get_target(args.target)
    data = load_demo()
    specs = [
        CandidateSpec(sparsity=s, precision=p, seed=i)
        for i, (s, p) in enumerate([(0.0, "int8"), (0.5, "int8"), (0.0, "float32"), (0.3, "int16x8"), (0.6, "int8")])
    ][: args.n]
    totals: list[float] = []
    by_kind: dict[str, list[float]] = {"dense": [], "pruned": []}
    stages: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(specs):
            t0 = time.perf_counter()
            result = evaluate_candidate(spec, target, data, Path(tmp) / f"c{i}")
            totals.append(time.perf_counter() - t0)
            by_kind["pruned" if spec.sparsity > 0 else "dense"].append(totals[-1])
            for name, sec in result.stage_seconds.items():
                stages.setdefault(name, []).append(sec)
            print(
                f"candidate {i}: sparsity {spec.sparsity:g} {spec.precision:8s} total {totals[-1]:5.1f} s  "
                + "  ".join(f"{k} {v:.1f}" for k, v in result.stage_seconds.items())
                + f"  accuracy {result.figures['accuracy'].value:.3f}"
            )
    print(f"\nTensorFlow import (once per process): {import_s:.1f} s")
    print(f"{'stage':10s} {'p50 s':>7s} {'p99 s':>7s}")
    for name, values in [("total", totals), *stages.items()]:
        print(f"{name:10s} {np.percentile(values, 50):7.2f} {np.percentile(values, 99):7.2f}")
    for kind, values in by_kind.items():
        if values:
            print(f"{kind + ' candidates':18s} p50 {np.percentile(values, 50):6.2f} s over {len(values)}")
    print(f"\ngoal p50 <= 10 s per candidate: {'met' if np.percentile(totals, 50) <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
