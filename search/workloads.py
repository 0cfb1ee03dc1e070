"""Benchmark workloads shaped like MLPerf Tiny's, generated deterministically (nothing is downloaded).

``bench:kws``: keyword-spotting-shaped features, ``(N, 49, 10, 1)`` like MLPerf Tiny's DS-CNN input
(49 frames x 10 MFCC coefficients), 12 classes named as in its Speech Commands setup. Each keyword
class is a fixed pattern of three time-frequency "formant" blobs; a sample is its class pattern
shifted in time by up to +-8 frames, scaled in loudness, with Gaussian noise. ``_silence_`` is noise
only; ``_unknown_`` is three blobs at random places. Learnable, but not trivially (the shift and the
noise overlap the classes).

``bench:vww``: visual-wake-words-shaped frames, ``(N, 96, 96, 1)`` grey, 2 classes
(``no_person`` / ``person``). Every frame is a smooth random background with 0-2 rectangles; a
``person`` frame also holds an upright figure (an elliptic body under a round head) at a random place,
scale and brightness; a ``no_person`` frame gets a lying ellipse of the same area instead, so blob size
or brightness alone do not tell the classes apart.

These are synthetic: they exercise the pipeline at the real input shapes and costs (MACs, arena,
conversion, training time); their accuracies say nothing about real keyword spotting or person
detection.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from search.errors import DataError

if TYPE_CHECKING:
    from search.data import Dataset

KWS_CLASSES = ("_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VWW_CLASSES = ("no_person", "person")

#: Default sample counts: a few thousand, as the benchmarks use them.
DEFAULT_SAMPLES = {"kws": 3000, "vww": 2000}


def _blob(shape: tuple[int, int], center: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    return np.exp(-(((rows - center[0]) / sigma[0]) ** 2 + ((cols - center[1]) / sigma[1]) ** 2) / 2).astype(np.float32)


def kws_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` KWS-shaped samples ``(n, 49, 10, 1)`` float32 in [0, 1] and labels 0..11 (balanced)."""
    frames, coefs = 49, 10
    patterns = np.random.default_rng(1234)  # the keywords themselves: fixed, independent of ``seed``
    templates = []
    for _ in KWS_CLASSES:
        blobs = [
            (patterns.uniform(10, 39), patterns.uniform(0.5, 8.5), patterns.uniform(2, 5), patterns.uniform(0.8, 1.8))
            for _ in range(3)
        ]
        templates.append(blobs)
    rng = np.random.default_rng([seed, 49, 10])
    y = np.arange(n, dtype=np.int64) % len(KWS_CLASSES)
    rng.shuffle(y)
    x = np.empty((n, frames, coefs), dtype=np.float32)
    for i, label in enumerate(y):
        img = np.zeros((frames, coefs), dtype=np.float32)
        if label == 0:  # silence: noise only
            pass
        else:
            blobs = templates[label]
            if label == 1:  # unknown: blobs anywhere
                blobs = [
                    (rng.uniform(8, 41), rng.uniform(0, 9), rng.uniform(2, 5), rng.uniform(0.8, 1.8)) for _ in range(3)
                ]
            shift = rng.uniform(-8, 8)
            for t, f, st, sf in blobs:
                img += _blob((frames, coefs), (t + shift, f + rng.normal(0, 0.4)), (st, sf)) * rng.uniform(0.6, 1.0)
            img *= rng.uniform(0.5, 1.0)
        img += rng.normal(0.0, 0.3, size=img.shape).astype(np.float32)
        x[i] = img
    x = np.clip(x * 0.6 + 0.2, 0.0, 1.0)
    return x[..., np.newaxis], y


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.uniform(0.2, 0.8, size=(6, 6)).astype(np.float32)
    img = np.kron(coarse, np.ones((size // 6, size // 6), dtype=np.float32))
    # smooth the blocks with a separable box filter so edges are soft
    kernel = np.ones(9, dtype=np.float32) / 9
    img = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, img)
    img = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, img)
    for _ in range(int(rng.integers(0, 3))):
        r0, c0 = rng.integers(0, size - 8, size=2)
        h, w = rng.integers(6, 30, size=2)
        img[r0 : r0 + h, c0 : c0 + w] = rng.uniform(0.0, 1.0)
    return img


def vww_arrays(n: int, seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """``n`` VWW-shaped frames ``(n, size, size, 1)`` float32 in [0, 1] and labels 0/1 (balanced)."""
    rng = np.random.default_rng([seed, size, size])
    y = np.arange(n, dtype=np.int64) % 2
    rng.shuffle(y)
    rows = np.arange(size, dtype=np.float32)[:, None]
    cols = np.arange(size, dtype=np.float32)[None, :]
    x = np.empty((n, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        img = _background(rng, size)
        scale = rng.uniform(0.6, 1.3)
        contrast = rng.uniform(0.3, 0.6)
        r, c = rng.uniform(30, size - 30), rng.uniform(16, size - 16)
        if label == 1:  # upright body and a head above it
            body = ((rows - r) / (18 * scale)) ** 2 + ((cols - c) / (8 * scale)) ** 2 <= 1
            head = ((rows - (r - 24 * scale)) / (6 * scale)) ** 2 + ((cols - c) / (6 * scale)) ** 2 <= 1
            mask = body | head
        else:  # a lying ellipse of about the same area
            mask = ((rows - r) / (8 * scale)) ** 2 + ((cols - c) / (22 * scale)) ** 2 <= 1
        img = np.where(mask, img + contrast, img)
        img += rng.normal(0.0, 0.05, size=img.shape).astype(np.float32)
        x[i] = img
    return np.clip(x, 0.0, 1.0)[..., np.newaxis], y


_WORKLOADS: dict[str, tuple[Callable[[int, int], tuple[np.ndarray, np.ndarray]], tuple[str, ...]]] = {
    "kws": (kws_arrays, KWS_CLASSES),
    "vww": (vww_arrays, VWW_CLASSES),
}


def workload_names() -> tuple[str, ...]:
    """The workload names ``bench:NAME`` accepts."""
    return tuple(_WORKLOADS)


@functools.lru_cache(maxsize=4)
def load_workload(name: str, seed: int = 0, samples: int | None = None) -> Dataset:
    """The ``bench:NAME`` dataset, validated and split like any other (cached per arguments)."""
    from search.data import from_arrays

    if name not in _WORKLOADS:
        raise DataError(
            f"unknown workload 'bench:{name}'; expected one of: {', '.join(f'bench:{w}' for w in _WORKLOADS)}"
        )
    make, classes = _WORKLOADS[name]
    n = DEFAULT_SAMPLES[name] if samples is None else samples
    x, y = make(n, 0)  # the data itself is fixed; ``seed`` drives the split, as for every dataset
    return from_arrays(x, y, name=f"bench:{name}", class_names=classes, seed=seed)
