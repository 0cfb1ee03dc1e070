"""Datasets for the search: load, validate and split them into train / validation / representative sets.

Four sources, one result (:class:`Dataset`):

- the demo (:func:`load_demo`): scikit-learn's ``load_digits`` (1,797 real 8x8 digits, shipped with
  scikit-learn, nothing is downloaded);
- a ``.npz`` file (:func:`load_npz`) holding ``x, y`` (split here) or ``x_train, y_train, x_val, y_val``;
- a folder with one sub-folder of images per class (:func:`load_image_folder`);
- arrays in memory (:func:`from_arrays`), as the notebook magics pass them.

Rules applied to every source (each breach is a :class:`DataError` naming the rule, what was found and
the source): images are ``(N, H, W)`` or ``(N, H, W, C)`` with ``C`` 1 or 3, numeric and finite; labels are
integers ``0..K-1`` with no gap (or one-hot rows), ``K >= 2``; every class has at least
:data:`MIN_SAMPLES_PER_CLASS` training samples and at least one validation sample.

Scaling: integer images whose values lie in ``0..255`` (``uint8`` pixels, or integers of a wider type
holding pixel values) are divided by 255; ``uint16`` images with larger values are divided by 65,535;
other integer ranges are rejected. Float images are kept as they are (assumed already scaled, normally
to ``[0, 1]``). Everything is returned as float32 NHWC.

Splits are stratified and deterministic: the same ``seed`` gives the same split and the same
:attr:`Dataset.fingerprint`. The validation set takes ``ceil(N * val_fraction)`` samples, shared out
between classes in proportion to their size (largest remainder), at least one per class, and never
so many that a class keeps fewer than :data:`MIN_SAMPLES_PER_CLASS` training samples. The
representative set (for int8 calibration) is :data:`REPRESENTATIVE_SIZE` training samples drawn with
``seed``, or the whole training set when it is smaller than that.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import DataError

log = logging.getLogger(__name__)

#: Fewest training samples a class may have (a class also needs at least one validation sample).
MIN_SAMPLES_PER_CLASS = 5
#: Size of the representative (calibration) set; smaller training sets are used whole.
REPRESENTATIVE_SIZE = 200
#: Image file types read by :func:`load_image_folder`.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
COLOR_MODES: tuple[str, ...] = ("grayscale", "rgb")
#: Largest image (pixels) :func:`load_image_folder` decodes: 4096 x 4096. Bigger files are refused
#: before decoding (PIL's own bomb check only starts at 89 M pixels, far beyond what a tiny model needs).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Largest array a ``.npz`` may declare in its headers (bytes), checked before numpy allocates it.
MAX_NPZ_ARRAY_BYTES = 4 * 1024**3


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated, split dataset: float32 NHWC images in ``[0, 1]`` and int64 labels ``0..K-1``.

    ``x_rep`` holds real training samples for int8 calibration (see :data:`REPRESENTATIVE_SIZE`).
    ``fingerprint`` is the first 16 hex digits of a sha256 over every array and the class names.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_rep: np.ndarray
    class_names: tuple[str, ...]
    fingerprint: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one sample."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: name, fingerprint, shapes, samples per class per split, class names."""

        def split(x: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
            info: dict[str, Any] = {"samples": int(len(x)), "shape": [int(d) for d in x.shape]}
            if y is not None:
                counts = np.bincount(y, minlength=self.num_classes)
                info["per_class"] = {name: int(n) for name, n in zip(self.class_names, counts, strict=True)}
            return info

        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "classes": list(self.class_names),
            "splits": {
                "train": split(self.x_train, self.y_train),
                "val": split(self.x_val, self.y_val),
                "representative": split(self.x_rep, None),
            },
        }


# ----------------------------------------------------------------------------------------------- loaders


@functools.lru_cache(maxsize=4)
def load_demo(seed: int = 0) -> Dataset:
    """scikit-learn's digits (1,797 8x8 grey images, 10 classes) as ``(N, 8, 8, 1)`` / 16, split 80/20.

    Cached per seed (the arrays are read-only, so sharing one Dataset is safe).
    """
    images, target = _digits()
    x = np.asarray(images, dtype=np.float32)[..., np.newaxis] / np.float32(16.0)
    y = np.asarray(target, dtype=np.int64)
    return _from_float_arrays(x, y, "demo:digits", tuple(str(i) for i in range(10)), seed, 0.2, "sklearn load_digits")


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images ``(1797, 8, 8)``, labels), read from the file scikit-learn ships.

    ``sklearn.datasets.load_digits`` reads ``sklearn/datasets/data/digits.csv.gz`` (64 pixels and the
    label per row); importing scikit-learn to call it takes about 1.2 s here, the read itself 0.02 s,
    and every search process of the demo paid that import. This reads the same file the same way
    without the import, and falls back to ``load_digits`` if the file is not where it was.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0], "datasets", "data", "digits.csv.gz") if folders else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as f:
            rows = np.loadtxt(f, delimiter=",")
        return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str = "arrays",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> Dataset:
    """Validate in-memory arrays (``x``: (N,H,W[,C]) numeric; ``y``: labels or one-hot) and split them."""
    source = f"arrays passed as '{name}'"
    xs = _images(np.asarray(x), "x", source)
    ys = _labels(np.asarray(y), "y", source)
    _same_length(xs, ys, "x", "y", source)
    return _from_float_arrays(xs, ys, name, _class_names(class_names, ys, source), seed, val_fraction, source)


def load_npz(path: str | Path, seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """Load a ``.npz`` holding ``x, y`` (split here, stratified) or ``x_train, y_train, x_val, y_val``.

    When both layouts are present the pre-split one is used. An optional ``class_names`` key holds a
    string array; otherwise classes are named ``"0".."K-1"``.
    """
    path = Path(path)
    source = f"file {path}"
    if not path.is_file():
        raise DataError(f"expected a .npz file, found nothing at {path}")
    arrays = _read_npz(path)
    found = ", ".join(sorted(arrays)) or "none"
    names = arrays.get("class_names")
    if names is not None and names.dtype.kind not in "US":
        raise DataError(f"expected class_names as a string array, found dtype {names.dtype} ({source})")
    name_list = None if names is None else [str(n) for n in names.reshape(-1)]
    name = f"npz:{path.name}"
    split_keys = ("x_train", "y_train", "x_val", "y_val")
    if all(k in arrays for k in split_keys):
        x_tr = _images(arrays["x_train"], "x_train", source)
        x_va = _images(arrays["x_val"], "x_val", source)
        if x_tr.shape[1:] != x_va.shape[1:]:
            raise DataError(
                f"expected x_train and x_val with the same sample shape, found {x_tr.shape[1:]} and "
                f"{x_va.shape[1:]} ({source})"
            )
        y_tr = _labels(arrays["y_train"], "y_train", source)
        y_va = _labels(arrays["y_val"], "y_val", source)
        _same_length(x_tr, y_tr, "x_train", "y_train", source)
        _same_length(x_va, y_va, "x_val", "y_val", source)
        classes = _class_names(name_list, np.concatenate([y_tr, y_va]), source)
        return _assemble(name, x_tr, y_tr, x_va, y_va, classes, seed, source)
    if "x" in arrays and "y" in arrays:
        x = _images(arrays["x"], "x", source)
        y = _labels(arrays["y"], "y", source)
        _same_length(x, y, "x", "y", source)
        return _from_float_arrays(x, y, name, _class_names(name_list, y, source), seed, val_fraction, source)
    raise DataError(
        f"expected keys x, y or x_train, y_train, x_val, y_val (optional class_names), found keys: {found} ({source})"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, after checking each header's declared size against the bytes it holds."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                declared = math.prod(shape) * dtype.itemsize
                if declared > min(info.file_size, MAX_NPZ_ARRAY_BYTES):
                    raise DataError(
                        f"expected .npz arrays no larger than the data stored for them (and at most "
                        f"{MAX_NPZ_ARRAY_BYTES // 1024**3} GiB), found {info.filename[:-4]!r} declaring shape "
                        f"{shape} of {dtype} ({declared:,} B) in a {info.file_size:,} B member (file {path})"
                    )
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        # zipfile / numpy raise these for corrupt archives, bad headers, pickled objects and odd compression.
        raise DataError(f"expected a readable .npz archive (numpy.savez), could not read {path}: {exc}") from None


def load_image_folder(
    path: str | Path,
    image_size: tuple[int, int] = (32, 32),
    color_mode: str = "grayscale",
    seed: int = 0,
    val_fraction: float = 0.2,
) -> Dataset:
    """Read one sub-folder per class (sorted folder names are the class names) of PNG / JPEG / BMP images.

    Images are read with PIL, converted to grey (``"grayscale"``, 1 channel) or ``"rgb"`` (3 channels),
    resized to ``image_size`` = (height, width) with bilinear filtering, and divided by 255. Files
    with other suffixes and hidden entries are ignored; sub-folders of a class folder are searched too.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"expected a folder with one sub-folder per class, found no folder at {root}")
    if color_mode not in COLOR_MODES:
        raise DataError(f"color_mode must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}")
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise DataError(f"image_size must be (height, width) >= 1, got {image_size}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        found = f"only {class_dirs[0].name!r}" if class_dirs else "none"
        raise DataError(f"expected one sub-folder per class (at least 2 classes) in {root}, found {found}")
    pil_mode = "L" if color_mode == "grayscale" else "RGB"
    images: list[np.ndarray] = []
    labels: list[int] = []
    real_root = root.resolve()
    for label, class_dir in enumerate(class_dirs):
        _check_inside(class_dir, real_root, root)
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        for file in files:
            _check_inside(file, real_root, root)
        if not files:
            raise DataError(
                f"expected {', '.join(IMAGE_SUFFIXES)} images in class folder {class_dir}, found none (empty class)"
            )
        for file in files:
            images.append(_read_image(file, pil_mode, (width, height)))
            labels.append(label)
    x = np.stack(images).reshape(len(images), height, width, 1 if pil_mode == "L" else 3)
    xs = x.astype(np.float32) / np.float32(255.0)
    ys = np.asarray(labels, dtype=np.int64)
    classes = tuple(p.name for p in class_dirs)
    return _from_float_arrays(xs, ys, f"images:{root.name}", classes, seed, val_fraction, f"folder {root}")


def _check_inside(entry: Path, real_root: Path, root: Path) -> None:
    """Refuse a class folder or image that is (or passes through) a link leading outside the dataset folder."""
    if not entry.resolve().is_relative_to(real_root):
        raise DataError(
            f"{entry} leads outside the dataset folder {root} (a symbolic link to {entry.resolve()}); "
            "copy the images into the folder instead"
        )


def _read_image(file: Path, pil_mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 ``(height, width[, 3])``, or a DataError naming the file.

    The pixel count is checked from the header before decoding (:data:`MAX_IMAGE_PIXELS`); any error
    PIL raises on a broken file (it raises OSError, ValueError, SyntaxError, struct.error, EOFError,
    DecompressionBombError ... depending on the format) becomes one DataError.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DataError(f"expected images of at most {MAX_IMAGE_PIXELS:,} pixels, found {w}x{h} in {file}")
                resized = img.convert(pil_mode).resize(size, Image.Resampling.BILINEAR)
                return np.asarray(resized, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses it at open, from the header (> 179 M pixels)
        raise DataError(f"expected images of at most {MAX_IMAGE_PIXELS:,} pixels, found {file}: {exc}") from None
    except MemoryError:
        raise DataError(f"expected a readable image, {file} does not fit in memory when decoded") from None
    except Exception as exc:  # PIL's decoders raise many types on hostile files; this is the boundary
        raise DataError(f"expected a readable image, could not open {file}: {type(exc).__name__}: {exc}") from None


def load_dataset(spec: str | Path | None = None, seed: int = 0) -> Dataset:
    """Load by spec: ``None``/``"demo"`` -> demo; ``"bench:kws"``/``"bench:vww"`` -> a generated benchmark
    workload (:mod:`search.workloads`); ``*.npz`` -> :func:`load_npz`; a folder -> image folder."""
    if spec is None or (isinstance(spec, str) and spec.strip() in ("demo", "demo:digits")):
        return load_demo(seed)
    if isinstance(spec, str) and spec.strip().startswith("bench:"):
        from search.workloads import load_workload

        return load_workload(spec.strip()[len("bench:") :], seed)
    path = Path(spec)
    if path.suffix.lower() == ".npz":
        return load_npz(path, seed=seed)
    if path.is_dir():
        return load_image_folder(path, seed=seed)
    found = "a file that is not .npz" if path.is_file() else "nothing at that path"
    raise DataError(
        f"expected 'demo', 'bench:kws', 'bench:vww', a .npz file or a folder with one sub-folder of images per "
        f"class, got {str(spec)!r} ({found})"
    )


# ----------------------------------------------------------------------------------------------- checks


def _images(x: np.ndarray, key: str, source: str) -> np.ndarray:
    """Check an image array and return it as float32 NHWC (see the module docstring for scaling)."""
    if x.dtype.kind not in "uif":
        raise DataError(f"expected numeric {key} (integer or float), found dtype {x.dtype} ({source})")
    if x.ndim not in (3, 4):
        raise DataError(
            f"expected {key} with 3 dims (N, H, W) or 4 dims (N, H, W, C), found shape {x.shape} ({source})"
        )
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.shape[-1] not in (1, 3):
        hint = "; it looks channels-first (N, C, H, W): transpose to (N, H, W, C)" if x.shape[1] in (1, 3) else ""
        raise DataError(f"expected {key} with 1 or 3 channels (last axis), found shape {x.shape}{hint} ({source})")
    if x.shape[0] == 0 or min(x.shape[1:3]) < 1:
        raise DataError(f"expected {key} with at least one sample of at least 1x1, found shape {x.shape} ({source})")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            raise DataError(f"expected finite {key}, found {n_nan} NaN and {n_inf} inf values ({source})")
        return x.astype(np.float32, copy=False)
    lo, hi = int(x.min()), int(x.max())
    if lo >= 0 and hi <= 255:
        scale = 255.0
    elif x.dtype == np.uint16:
        scale = 65535.0
    else:
        raise DataError(
            f"expected integer {key} pixels in 0..255 (or uint16), found values {lo}..{hi} in dtype {x.dtype}; "
            f"scale it to float in [0, 1] first ({source})"
        )
    return x.astype(np.float32) / np.float32(scale)


def _labels(y: np.ndarray, key: str, source: str) -> np.ndarray:
    """Check labels (1-D integers, an (N, 1) column, or 2-D one-hot rows); return int64 (gaps checked later)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.dtype.kind not in "uifb" or not np.isin(y, (0, 1)).all() or not (y.sum(axis=1) == 1).all():
            raise DataError(
                f"expected {key} as 1-D integer labels or 2-D one-hot rows (0/1, one 1 per row), "
                f"found a {y.dtype} array of shape {y.shape} that is not one-hot ({source})"
            )
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        raise DataError(f"expected {key} as 1-D labels or 2-D one-hot, found shape {y.shape} ({source})")
    if y.dtype.kind not in "uif":
        raise DataError(f"expected integer labels in {key}, found dtype {y.dtype} ({source})")
    if y.dtype.kind == "f":
        frac = ~np.isfinite(y) | (y != np.round(y))
        if frac.any():
            example = y[frac][0]
            raise DataError(
                f"expected integer labels in {key}, found {int(frac.sum())} non-integer values, e.g. {example} "
                f"({source})"
            )
    if len(y) and y.min() < 0:
        raise DataError(f"expected labels 0..K-1 in {key}, found negative labels (min {int(y.min())}) ({source})")
    if len(y) and y.max() >= len(y):
        # K classes need at least K samples, so a label >= the sample count cannot be a class index
        # (and must not size anything: one label of 10**8 once built a 10**8-element set).
        raise DataError(
            f"expected labels 0..K-1 with K <= the number of samples ({len(y)}) in {key}, found label "
            f"{y.max():.0f} ({source})"
        )
    return y.astype(np.int64)


def _same_length(x: np.ndarray, y: np.ndarray, xkey: str, ykey: str, source: str) -> None:
    if len(x) != len(y):
        raise DataError(f"expected as many labels as images, found {xkey}: {len(x)} and {ykey}: {len(y)} ({source})")


def _class_names(names: Sequence[str] | None, y: np.ndarray, source: str) -> tuple[str, ...]:
    """Check labels are 0..K-1 with no gap and K >= 2; return the class names (given, or "0".."K-1")."""
    present = np.unique(y)
    k = int(present.max()) + 1 if len(present) else 0
    if k > len(y):
        raise DataError(
            f"expected labels 0..K-1 with K <= the number of samples ({len(y)}), found label {k - 1} ({source})"
        )
    if len(present) != k:
        missing = np.setdiff1d(np.arange(k), present)
        shown = ", ".join(str(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(
            f"expected contiguous labels 0..K-1, found labels {int(present.min())}..{k - 1} with no samples for "
            f"{shown} ({source})"
        )
    if k < 2:
        raise DataError(f"expected at least 2 classes, found {k} ({source})")
    if names is None:
        return tuple(str(i) for i in range(k))
    if len(names) != k:
        raise DataError(f"expected {k} class names (labels 0..{k - 1}), found {len(names)} ({source})")
    if len(set(names)) != len(names):
        raise DataError(f"expected distinct class names, found duplicates in {list(names)} ({source})")
    return tuple(str(n) for n in names)


# ----------------------------------------------------------------------------------------------- splitting


def _from_float_arrays(
    x: np.ndarray,
    y: np.ndarray,
    name: str,
    class_names: tuple[str, ...],
    seed: int,
    val_fraction: float,
    source: str,
) -> Dataset:
    """Split checked float32 NHWC ``x`` / int64 ``y`` (stratified, seeded) and assemble the Dataset."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    k = len(class_names)
    counts = np.bincount(y, minlength=k)
    need = MIN_SAMPLES_PER_CLASS + 1
    for c, n in enumerate(counts):
        if n < need:
            raise DataError(
                f"expected at least {need} samples per class ({MIN_SAMPLES_PER_CLASS} to train, 1 to validate), "
                f"found {int(n)} for class {class_names[c]!r} ({source})"
            )
    n_val = _val_quota(counts, val_fraction)
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    val_idx: list[np.ndarray] = []
    for c in range(k):
        idx = rng.permutation(np.flatnonzero(y == c))
        val_idx.append(idx[: n_val[c]])
        train_idx.append(idx[n_val[c] :])
    tr = rng.permutation(np.concatenate(train_idx))
    va = np.sort(np.concatenate(val_idx))
    return _assemble(name, x[tr], y[tr], x[va], y[va], class_names, seed, source)


def _val_quota(counts: np.ndarray, val_fraction: float) -> np.ndarray:
    """Validation samples per class: ceil(N * fraction) in all by largest remainder, >= 1 per class, and
    never so many that a class keeps fewer than MIN_SAMPLES_PER_CLASS for training."""
    total = math.ceil(int(counts.sum()) * val_fraction)
    exact = counts * val_fraction
    quota = np.maximum(np.floor(exact).astype(np.int64), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for c in order[: max(0, total - int(quota.sum()))]:
        quota[c] += 1
    return np.minimum(quota, counts - MIN_SAMPLES_PER_CLASS)


def _assemble(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    class_names: tuple[str, ...],
    seed: int,
    source: str,
) -> Dataset:
    """Check per-class counts of a split, draw the representative set and fingerprint everything."""
    k = len(class_names)
    n_train, n_val = np.bincount(y_train, minlength=k), np.bincount(y_val, minlength=k)
    for c in range(k):
        if n_train[c] < MIN_SAMPLES_PER_CLASS or n_val[c] < 1:
            raise DataError(
                f"expected at least {MIN_SAMPLES_PER_CLASS} training and 1 validation samples per class, found "
                f"{int(n_train[c])} training and {int(n_val[c])} validation samples for class {class_names[c]!r} "
                f"({source})"
            )
    rng = np.random.default_rng([seed, 1])
    rep_idx = np.sort(rng.permutation(len(x_train))[:REPRESENTATIVE_SIZE])
    arrays: dict[str, np.ndarray] = {
        "x_train": np.ascontiguousarray(x_train, dtype=np.float32),
        "y_train": np.ascontiguousarray(y_train, dtype=np.int64),
        "x_val": np.ascontiguousarray(x_val, dtype=np.float32),
        "y_val": np.ascontiguousarray(y_val, dtype=np.int64),
    }
    arrays["x_rep"] = arrays["x_train"][rep_idx]
    digest = hashlib.sha256()
    for key, arr in arrays.items():
        digest.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    digest.update("\x00".join(class_names).encode())
    for arr in arrays.values():
        arr.setflags(write=False)
    log.debug("dataset %s: %d train, %d val, %d classes", name, len(x_train), len(x_val), k)
    return Dataset(name=name, class_names=class_names, fingerprint=digest.hexdigest()[:16], **arrays)
