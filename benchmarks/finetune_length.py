"""What a shorter pruning fine-tune would cost in accuracy: seconds and accuracy at 1, 2 (default) and 3 epochs.

A pruned candidate costs a dense candidate plus its pruning fine-tune
(``benchmarks/candidate_speed.py``). The fine-tune is real training: on the KWS- and VWW-shaped
workloads it is half of a pruned candidate's time or more, so the only way to make a pruned candidate much
cheaper is to train less. This benchmark measures what that would cost. It trains one base model,
then prunes a copy of it with :func:`search.training.prune` at several sparsities, once per
fine-tune length and seed (the seed orders the batches). It uses the pruning session of a search
worker, so the training step is traced once per length and seed, and that first prune is left out of
the seconds.

It prints, per sparsity and fine-tune length:

- the Keras validation accuracy after pruning, as a median over seeds, with the range;
- the fine-tune's seconds, p50 over sparsities and seeds.

It also prints each length's accuracy change against the default (2 epochs) at every sparsity. It asserts
nothing. The accuracy is the Keras model's, before conversion: conversion is the same at every
length.

    python benchmarks/finetune_length.py --data bench:kws                       # ds_cnn width 0.5
    python benchmarks/finetune_length.py --data bench:vww --width 0.25 --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workload import add_workload_arguments, describe, family_for  # noqa: E402

SPARSITIES = (0.3, 0.5, 0.6, 0.7, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser, data="bench:kws")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 2, 3], help="fine-tune epochs to compare")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    family = family_for(args)
    default = 2

    from search import _lazy, training
    from search.data import load_dataset
    from search.families import build_model

    keras = _lazy.keras()
    data = load_dataset(args.data)
    settings = training.TrainSettings(epochs=args.epochs)
    print(f"{describe(args, data, family)}; batch {settings.batch_size}", flush=True)
    keras.utils.set_random_seed(0)
    model = build_model(family, data.x_train.shape[1:], data.num_classes, args.width)
    training._compile(model, settings.learning_rate)
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, epochs=settings.epochs, batch_size=settings.batch_size, verbose=0)
    base = model.get_weights()
    dense = training.keras_accuracy(model, data.x_val, data.y_val)
    print(f"base model: {time.perf_counter() - start:.1f} s, validation accuracy {dense:.4f}", flush=True)

    accuracy: dict[tuple[int, float], list[float]] = {}
    seconds: dict[int, list[float]] = {}
    for length in args.lengths:
        for seed in range(args.seeds):
            # The seed orders the fine-tune's batches; a new seed is a new pruning session, traced once here.
            seeded = dataclasses.replace(settings, finetune_epochs=length, seed=seed)
            model.set_weights(base)
            training.prune(model, SPARSITIES[0], data.x_train, data.y_train, seeded, key="base")
            for sparsity in SPARSITIES:
                keras.utils.set_random_seed(seed)
                model.set_weights(base)
                start = time.perf_counter()
                training.prune(model, sparsity, data.x_train, data.y_train, seeded, key="base")
                seconds.setdefault(length, []).append(time.perf_counter() - start)
                acc = training.keras_accuracy(model, data.x_val, data.y_val)
                accuracy.setdefault((length, sparsity), []).append(acc)
            print(f"  {length} epoch(s), seed {seed}: done", flush=True)

    print(f"\nvalidation accuracy after pruning, median (min-max) over {args.seeds} seeds; dense {dense:.4f}")
    print(f"{'sparsity':>9s}" + "".join(f"{f'{n} epoch(s)':>24s}" for n in args.lengths))
    for sparsity in SPARSITIES:
        cells = []
        for length in args.lengths:
            values = accuracy[(length, sparsity)]
            cells.append(f"{statistics.median(values):.4f} ({min(values):.3f}-{max(values):.3f})")
        print(f"{sparsity:>9g}" + "".join(f"{c:>24s}" for c in cells))
    print(
        f"{'seconds':>9s}"
        + "".join(
            f"{f'p50 {np.percentile(seconds[n], 50):.2f} / p99 {np.percentile(seconds[n], 99):.2f}':>24s}"
            for n in args.lengths
        )
    )
    if default in args.lengths:
        for length in args.lengths:
            if length == default:
                continue
            changes = [
                100 * (statistics.median(accuracy[(length, s)]) - statistics.median(accuracy[(default, s)]))
                for s in SPARSITIES
            ]
            ratio = np.percentile(seconds[length], 50) / np.percentile(seconds[default], 50)
            print(
                f"{length} epoch(s) vs {default}: fine-tune p50 x{ratio:.2f}; accuracy change "
                + ", ".join(f"s={s:g} {c:+.2f}" for s, c in zip(SPARSITIES, changes, strict=True))
                + " points (medians over seeds)"
            )


if __name__ == "__main__":
    main()
