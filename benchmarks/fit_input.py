"""Training from numpy arrays against tinyfront's input pipeline: seconds and accuracy of the same fit.

Every fit in the search (base model, pruning fine-tune, quantisation-aware fine-tune) used to pass
its numpy arrays to Keras' ``fit(x, y, batch_size=..., shuffle=True)``, which builds its own tf.data
pipeline with an autotuned prefetch. Now the fits read :func:`search.training.batches`: the same
batches, a full shuffle every epoch, with tf.data's autotuning off. This benchmark trains one base
model per seed both ways, alternating, in one process. Both use the same family, width, epochs,
seed and learning rate. For each, it prints:

- the fit's seconds, as p50 / p99 and each run;
- the validation accuracy, as the median over seeds with the range.

The seed sets the weights' initialisation and the batch order, and a few epochs on a small
dataset are sensitive to both. Compare the medians, not one seed. The objects alive before the
first fit are left out of garbage collection, as in a search worker. It asserts nothing.

    python benchmarks/fit_input.py --data bench:kws                     # ds_cnn width 0.5, 5 epochs
    python benchmarks/fit_input.py --data bench:vww --width 0.25 --epochs 3 --seeds 6
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workload import add_workload_arguments, describe, family_for  # noqa: E402

KINDS = ("numpy arrays", "batches()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser, data="bench:kws")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    family = family_for(args)

    from search import _lazy, training
    from search.data import load_dataset
    from search.families import build_model

    keras = _lazy.keras()
    data = load_dataset(args.data)
    settings = training.TrainSettings(epochs=args.epochs)
    print(f"{describe(args, data, family)}; batch {settings.batch_size}", flush=True)
    gc.collect()
    gc.freeze()
    seconds: dict[str, list[float]] = {k: [] for k in KINDS}
    accuracy: dict[str, list[float]] = {k: [] for k in KINDS}
    for seed in range(args.seeds):
        for kind in KINDS:
            keras.utils.set_random_seed(seed)
            model = build_model(family, data.x_train.shape[1:], data.num_classes, args.width, seed=seed)
            training._compile(model, settings.learning_rate)
            training._build_for_fit(model, data.x_train, data.y_train)
            start = time.perf_counter()
            if kind == KINDS[0]:
                model.fit(
                    data.x_train, data.y_train, epochs=args.epochs, batch_size=settings.batch_size, shuffle=True,
                    verbose=0,
                )  # fmt: skip
            else:
                batches = training.batches(data.x_train, data.y_train, settings.batch_size, seed)
                model.fit(batches, epochs=args.epochs, verbose=0)
            seconds[kind].append(time.perf_counter() - start)
            accuracy[kind].append(training.keras_accuracy(model, data.x_val, data.y_val))
            print(f"  seed {seed} {kind:13s} {seconds[kind][-1]:6.1f} s  accuracy {accuracy[kind][-1]:.4f}", flush=True)
    print(f"\n{'input':13s} {'fit s p50 / p99':>17s}  {'accuracy median (range)':>25s}  each fit, s")
    for kind in KINDS:
        s, a = seconds[kind], accuracy[kind]
        print(
            f"{kind:13s} {np.percentile(s, 50):7.2f} / {np.percentile(s, 99):6.2f}  "
            f"{statistics.median(a):.4f} ({min(a):.3f}-{max(a):.3f})  " + " ".join(f"{v:.1f}" for v in s)
        )
    ratio = np.percentile(seconds[KINDS[1]], 50) / np.percentile(seconds[KINDS[0]], 50)
    ratio99 = np.percentile(seconds[KINDS[1]], 99) / np.percentile(seconds[KINDS[0]], 99)
    change = 100 * (statistics.median(accuracy[KINDS[1]]) - statistics.median(accuracy[KINDS[0]]))
    print(f"batches() / numpy arrays: p50 x{ratio:.2f}, p99 x{ratio99:.2f}; median accuracy {change:+.2f} points")


if __name__ == "__main__":
    main()
