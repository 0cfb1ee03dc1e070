"""Seconds per candidate, split by stage, as a search worker sees them: cold, dense and pruned.

A search worker is one long-lived process; every candidate of one width starts from the same
cached base model. This benchmark evaluates, in one process and for one width:

1. a **cold** candidate (dense int8): trains the base model (cached for the rest);
2. the same **dense** and **pruned** candidates twice: once with a fresh tfmot wrapper per pruned
   candidate (``REUSE_PRUNING_SESSIONS = False``: the pipeline before pruning sessions, where
   TensorFlow traces the wrapped training step again for every candidate) and once with the
   pruning session reused (:func:`search.training.prune` with the base's key, today's pipeline);
3. each pruned candidate once more, right after the same width and sparsity at another precision
   (``reused weights``): it starts from the weights that candidate's pruning kept
   (:func:`search.training.load_pruned`), as a search's repeated width and sparsity does;
4. what is left of a pruned candidate's extra cost: its pruning fine-tune alone
   (:func:`search.training.prune`, session reused) against the same fit without tfmot (a plain
   copy of the base, the same epochs, learning rate and batches, compiled and traced once).

It prints p50 / p99 per kind and stage, the pruned / dense ratio of p50s, and the deployed accuracy
of every pruned candidate under each pipeline (a speed-up must not change it by more than 1 point).
TensorFlow's one-off import is printed separately. Figures are wall-clock seconds on this machine;
the load average is printed beside them.

    python benchmarks/candidate_speed.py                            # digits demo, mobilenet_v1 w0.5
    python benchmarks/candidate_speed.py --data bench:kws           # ds_cnn on KWS-shaped 49x10 features
    python benchmarks/candidate_speed.py --data bench:vww --width 0.25 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workload import add_workload_arguments, describe, family_for  # noqa: E402

DENSE = (("int8", 0.0), ("float32", 0.0), ("int16x8", 0.0))
PRUNED = (("int8", 0.3), ("int16x8", 0.5), ("int8", 0.6), ("float32", 0.75))
#: The precision that prunes first in the "reused weights" pass.
OTHER_PRECISION = {"int8": "int16x8", "int16x8": "int8", "float32": "int8"}
REUSED = "reused weights"


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def fine_tune_seconds(training: Any, data: Any, dense: Any, cache: Path, runs: int = 4) -> dict[str, list[float]]:
    """Seconds of the pruning fine-tune of every sparsity in ``PRUNED`` (the base's pruning session,
    already traced by the candidates before), and of the same fit of a plain copy of the base: the
    same epochs, learning rate (half the base's) and batches, compiled and traced once (``runs``
    timed after one untimed)."""
    settings = training.TrainSettings(
        dense.epochs, dense.finetune_epochs, dense.batch_size, dense.learning_rate, dense.seed
    )
    x, y = data.x_train, data.y_train
    key = training.base_key(data.fingerprint, dense.family, dense.width, x.shape[1:], settings, dense.depth)
    base, _ = training.train_base(
        dense.family, dense.width, x, y, data.num_classes, settings, cache_dir=cache, key=key, depth=dense.depth
    )
    out: dict[str, list[float]] = {"tfmot": [], "plain": []}
    for _, sparsity in PRUNED:
        model = training.clone(base)
        t0 = time.perf_counter()
        training.prune(model, sparsity, x, y, settings, key=key)
        out["tfmot"].append(time.perf_counter() - t0)
    plain = training.clone(base)
    training._compile(plain, settings.learning_rate / 2)
    training._build_for_fit(plain, x, y)
    initial = plain.get_weights()
    for i in range(runs + 1):
        plain.set_weights(initial)
        training.reset_optimizer(plain)  # a fresh Adam, as a pruning session resets its own
        batches = training.batches(x, y, settings.batch_size, settings.seed)
        t0 = time.perf_counter()
        plain.fit(batches, epochs=settings.finetune_epochs, verbose=0)
        if i:
            out["plain"].append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser, data="demo")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--target", default="stm32l552")
    args = parser.parse_args()
    family = family_for(args)

    start = time.perf_counter()
    from search import _lazy

    _lazy.tensorflow()
    import_s = time.perf_counter() - start
    from search import training
    from search.candidate import evaluate_candidate
    from search.data import load_dataset
    from search.result import CandidateResult, CandidateSpec
    from search.targets import get_target

    target = get_target(args.target)
    data = load_dataset(args.data)

    def spec(precision: str, sparsity: float) -> CandidateSpec:
        return CandidateSpec(
            family=family, width=args.width, sparsity=sparsity, precision=precision, epochs=args.epochs,
            finetune_epochs=args.finetune_epochs,
        )  # fmt: skip

    print(f"{describe(args, data, family)}; {args.finetune_epochs} fine-tune epochs; target {target.name}")
    rows: dict[str, dict[str, list[float]]] = {}
    accuracy: dict[tuple[str, str, float], float] = {}

    def record(
        pipeline: str, kind: str, precision: str, sparsity: float, total: float, res: CandidateResult, note: str = ""
    ) -> None:
        stats = rows.setdefault(f"{pipeline}: {kind}", {})
        stats.setdefault("total", []).append(total)
        for name, sec in res.stage_seconds.items():
            stats.setdefault(name, []).append(sec)
        accuracy[(pipeline, precision, sparsity)] = res.figures["accuracy"].value
        print(
            f"{pipeline:15s} {kind:6s} s={sparsity:<4g} {precision:8s} {total:6.1f} s  "
            + "  ".join(f"{k} {v:.1f}" for k, v in res.stage_seconds.items())
            + f"  accuracy {res.figures['accuracy'].value:.3f}{note}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "base_models"
        t0 = time.perf_counter()
        cold = evaluate_candidate(spec("int8", 0.0), target, data, Path(tmp) / "cold", cache_dir=cache)
        cold_s = time.perf_counter() - t0
        print(
            f"cold   dense int8      {cold_s:6.1f} s  "
            + "  ".join(f"{k} {v:.1f}" for k, v in cold.stage_seconds.items())
            + f"  accuracy {cold.figures['accuracy'].value:.3f}"
        )
        # Every pruned candidate here has its own sparsity; the second pipeline repeats the first's, so
        # pruned weights kept from the first would stand in for its pruning: this benchmark times pruning.
        training.REUSE_PRUNED_WEIGHTS = False
        for pipeline, reuse in (("fresh wrapper", False), ("reused session", True)):
            training.REUSE_PRUNING_SESSIONS = reuse
            training._PRUNING_SESSIONS.clear()
            order = [x for pair in zip(PRUNED, (*DENSE, None), strict=True) for x in pair if x is not None]
            for i, (precision, sparsity) in enumerate(order):
                kind = "pruned" if sparsity > 0 else "dense"
                t0 = time.perf_counter()
                res = evaluate_candidate(
                    spec(precision, sparsity), target, data, Path(tmp) / f"{reuse}-{i}", cache_dir=cache
                )
                record(pipeline, kind, precision, sparsity, time.perf_counter() - t0, res)
        # A search also draws a pruned width and sparsity again at another precision: that candidate
        # starts from the pruned weights the first one kept (search.training.load_pruned).
        training.REUSE_PRUNED_WEIGHTS = True
        training._PRUNED_WEIGHTS.clear()
        for i, (precision, sparsity) in enumerate(PRUNED):
            first = OTHER_PRECISION[precision]
            evaluate_candidate(spec(first, sparsity), target, data, Path(tmp) / f"keep-{i}", cache_dir=cache)
            t0 = time.perf_counter()
            res = evaluate_candidate(spec(precision, sparsity), target, data, Path(tmp) / f"load-{i}", cache_dir=cache)
            assert res.reused_pruning
            record(REUSED, "pruned", precision, sparsity, time.perf_counter() - t0, res, f"  (pruned for {first})")
        fine_tunes = fine_tune_seconds(training, data, spec("int8", 0.0), cache)
    print(f"\nTensorFlow import (once per worker process): {import_s:.1f} s; cold candidate: {cold_s:.1f} s")
    stages = ("total", "train", "prune", "qat", "convert", "measure")
    print(f"\n{'p50 / p99 s':28s}" + "".join(f"{s:>15s}" for s in stages))
    for name, stats in rows.items():
        cells = [f"{p(stats[s], 50):6.2f} / {p(stats[s], 99):5.2f}" if s in stats else f"{'-':>15s}" for s in stages]
        print(f"{name:28s}" + "".join(f"{c:>15s}" for c in cells))
    print()
    for pipeline in ("fresh wrapper", "reused session"):
        dense, pruned = rows[f"{pipeline}: dense"]["total"], rows[f"{pipeline}: pruned"]["total"]
        ratio = p(pruned, 50) / p(dense, 50)
        print(f"{pipeline:15s}: pruned p50 / dense p50 = {p(pruned, 50):.2f} / {p(dense, 50):.2f} = x{ratio:.2f}")
    reused, dense = rows[f"{REUSED}: pruned"]["total"], rows["reused session: dense"]["total"]
    print(
        f"{REUSED:15s}: pruned p50 / dense p50 = {p(reused, 50):.2f} / {p(dense, 50):.2f} = "
        f"x{p(reused, 50) / p(dense, 50):.2f} (a width and sparsity this worker pruned before, at another precision)"
    )
    dense_p50 = p(rows["reused session: dense"]["total"], 50)
    print(
        f"\nfine-tune alone, p50 / p99 s: with tfmot (session reused) {p(fine_tunes['tfmot'], 50):.2f} / "
        f"{p(fine_tunes['tfmot'], 99):.2f}; the same fit without tfmot {p(fine_tunes['plain'], 50):.2f} / "
        f"{p(fine_tunes['plain'], 99):.2f} (x{p(fine_tunes['tfmot'], 50) / p(fine_tunes['plain'], 50):.2f}); "
        f"pruned within 1.5x of dense needs a fine-tune of at most 0.5 x dense p50 = {0.5 * dense_p50:.2f} s"
    )
    print("\ndeployed accuracy, fresh wrapper vs reused session (pruned candidates):")
    worst = 0.0
    for precision, sparsity in PRUNED:
        a, b = accuracy[("fresh wrapper", precision, sparsity)], accuracy[("reused session", precision, sparsity)]
        worst = max(worst, abs(a - b))
        print(f"  s={sparsity:<4g} {precision:8s} {a:.4f}  {b:.4f}  difference {100 * (b - a):+.2f} points")
    print(f"largest difference: {100 * worst:.2f} points (goal <= 1 point)")
    print(f"\ndeployed accuracy, own pruning (reused session) vs {REUSED} (pruned for another precision):")
    worst = 0.0
    for precision, sparsity in PRUNED:
        a, b = accuracy[("reused session", precision, sparsity)], accuracy[(REUSED, precision, sparsity)]
        worst = max(worst, abs(a - b))
        print(f"  s={sparsity:<4g} {precision:8s} {a:.4f}  {b:.4f}  difference {100 * (b - a):+.2f} points")
    print(f"largest difference: {100 * worst:.2f} points")


if __name__ == "__main__":
    main()
