"""The generated MLPerf-Tiny-shaped workloads: shapes, classes, determinism, and that they are learnable."""

from __future__ import annotations

import numpy as np
import pytest

from search.data import load_dataset
from search.errors import DataError
from search.workloads import KWS_CLASSES, VWW_CLASSES, kws_arrays, vww_arrays


def test_kws_shape_classes_and_determinism() -> None:
    x, y = kws_arrays(240, seed=0)
    assert x.shape == (240, 49, 10, 1) and x.dtype == np.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert np.bincount(y, minlength=12).tolist() == [20] * 12
    x2, y2 = kws_arrays(240, seed=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = kws_arrays(240, seed=1)
    assert not np.array_equal(x, x3)


def test_vww_shape_classes_and_determinism() -> None:
    x, y = vww_arrays(40, seed=0)
    assert x.shape == (40, 96, 96, 1) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [20, 20]
    x2, _ = vww_arrays(40, seed=0)
    assert np.array_equal(x, x2)


def _nearest_centroid_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    flat_tr, flat_va = x_train.reshape(len(x_train), -1), x_val.reshape(len(x_val), -1)
    centroids = np.stack([flat_tr[y_train == c].mean(axis=0) for c in range(int(y_train.max()) + 1)])
    dist = ((flat_va[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return float((dist.argmin(axis=1) == y_val).mean())


def test_kws_is_learnable_but_not_trivial() -> None:
    """Nearest class mean: far above chance (1/12) but below perfect, so model capacity matters."""
    data = load_dataset("bench:kws")
    assert data.class_names == KWS_CLASSES and data.input_shape == (49, 10, 1)
    assert len(data.x_train) + len(data.x_val) == 3000
    acc = _nearest_centroid_accuracy(data.x_train, data.y_train, data.x_val, data.y_val)
    assert 0.4 < acc < 0.95, acc


def test_vww_loads_through_the_data_spec() -> None:
    data = load_dataset("bench:vww")
    assert data.class_names == VWW_CLASSES and data.input_shape == (96, 96, 1)
    assert len(data.x_train) + len(data.x_val) == 2000
    # blob brightness and size do not give the class away: the class means are nearly the same
    assert abs(float(data.x_train[data.y_train == 1].mean() - data.x_train[data.y_train == 0].mean())) < 0.02


def test_unknown_workload_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"unknown workload 'bench:cifar'.*bench:kws, bench:vww"):
        load_dataset("bench:cifar")
