from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.data import (
    MIN_SAMPLES_PER_CLASS,
    REPRESENTATIVE_SIZE,
    Dataset,
    from_arrays,
    load_dataset,
    load_demo,
    load_image_folder,
    load_npz,
)
from search.errors import DataError


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return load_demo(seed=0)


def blobs(n_per_class: tuple[int, ...] = (20, 20, 20), shape: tuple[int, ...] = (6, 5), seed: int = 0):
    """uint8 images whose mean brightness encodes the class, and their labels."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)]).astype(np.int64)
    x = (rng.integers(0, 60, size=(len(y), *shape)) + 60 * y.reshape(-1, *([1] * len(shape)))).astype(np.uint8)
    return x, y


def save(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------------ demo


def test_demo_split_sizes_shapes_and_range(demo: Dataset) -> None:
    assert demo.name == "demo:digits"
    assert demo.x_train.shape == (1437, 8, 8, 1) and demo.x_val.shape == (360, 8, 8, 1)
    assert demo.x_rep.shape == (REPRESENTATIVE_SIZE, 8, 8, 1) == (200, 8, 8, 1)
    assert demo.input_shape == (8, 8, 1) and demo.num_classes == 10
    assert demo.class_names == tuple(str(i) for i in range(10))
    for x in (demo.x_train, demo.x_val, demo.x_rep):
        assert x.dtype == np.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert demo.y_train.dtype == np.int64 and set(np.unique(demo.y_train)) == set(range(10))


def test_demo_split_is_stratified_and_disjoint(demo: Dataset) -> None:
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    val = np.bincount(demo.y_val, minlength=10)
    train = np.bincount(demo.y_train, minlength=10)
    np.testing.assert_array_equal(train + val, full)
    assert np.all(np.abs(val - full * 0.2) < 1.0)  # every class within one sample of 20 %
    # no image is in both splits (digits has no exact duplicates across these splits)
    train_rows = {row.tobytes() for row in demo.x_train}
    assert sum(row.tobytes() in train_rows for row in demo.x_val) == 0
    # the representative set is made of training samples
    assert all(row.tobytes() in train_rows for row in demo.x_rep)


def test_demo_reads_scikit_learns_digits_file_without_importing_scikit_learn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from search.data import _digits

    images, target = _digits()
    expected = load_digits()
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(target, expected.target)
    probe = "import sys\nfrom search.data import load_demo\nload_demo()\nprint('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False"], done.stderr
    # the file not found where scikit-learn keeps it: load_digits, the same arrays
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    images, target = _digits()
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(target, expected.target)


def test_demo_is_deterministic_and_seed_changes_split(demo: Dataset) -> None:
    again = load_demo.__wrapped__(seed=0)  # bypass the cache: really recompute
    assert again.fingerprint == demo.fingerprint and len(demo.fingerprint) == 16
    int(demo.fingerprint, 16)
    np.testing.assert_array_equal(again.x_train, demo.x_train)
    np.testing.assert_array_equal(again.y_val, demo.y_val)
    other = load_demo(seed=1)
    assert other.fingerprint != demo.fingerprint
    assert not np.array_equal(other.y_train, demo.y_train)


def test_describe_is_json_and_counts(demo: Dataset) -> None:
    info = json.loads(json.dumps(demo.describe()))
    assert info["name"] == "demo:digits" and info["fingerprint"] == demo.fingerprint
    assert info["input_shape"] == [8, 8, 1] and info["num_classes"] == 10
    assert info["splits"]["train"]["samples"] == 1437 and info["splits"]["val"]["samples"] == 360
    assert sum(info["splits"]["val"]["per_class"].values()) == 360
    assert info["splits"]["representative"]["samples"] == 200


def test_arrays_are_read_only(demo: Dataset) -> None:
    with pytest.raises(ValueError):
        demo.x_train[0, 0, 0, 0] = 2.0


# ------------------------------------------------------------------------------------------------ npz


def test_npz_xy_layout_is_split_and_scaled(tmp_path: Path) -> None:
    x, y = blobs((20, 30, 25))
    path = save(tmp_path, "blobs.npz", x=x, y=y, class_names=np.array(["dark", "mid", "light"]))
    ds = load_npz(path, seed=3)
    assert ds.name == "npz:blobs.npz" and ds.class_names == ("dark", "mid", "light")
    assert ds.input_shape == (6, 5, 1)
    assert (len(ds.x_train), len(ds.x_val)) == (60, 15)  # ceil(75 * 0.2) = 15
    np.testing.assert_array_equal(np.bincount(ds.y_val), [4, 6, 5])
    assert len(ds.x_rep) == 60  # fewer than REPRESENTATIVE_SIZE training samples: all of train
    assert float(ds.x_train.max()) <= 1.0 and float(ds.x_train.min()) >= 0.0
    # the scaling is value / 255: class 2 images are 120..179 -> 0.47..0.70
    assert float(ds.x_train[ds.y_train == 2].min()) == pytest.approx(120 / 255)
    assert load_npz(path, seed=3).fingerprint == ds.fingerprint
    assert load_dataset(str(path), seed=3).fingerprint == ds.fingerprint


def test_npz_presplit_layout_with_one_hot_and_float(tmp_path: Path) -> None:
    x, y = blobs((10, 10), shape=(4, 4, 3))
    one_hot = np.eye(2, dtype=np.float32)[y]
    xf = x.astype(np.float32) / 255.0
    path = save(
        tmp_path, x_train=xf[::2], y_train=one_hot[::2], x_val=xf[1::2][:6], y_val=one_hot[1::2][:6].astype(np.uint8)
    )
    ds = load_npz(path)
    assert ds.input_shape == (4, 4, 3) and ds.num_classes == 2 and ds.class_names == ("0", "1")
    np.testing.assert_array_equal(ds.y_train, y[::2])
    np.testing.assert_array_equal(ds.y_val, y[1::2][:6])
    np.testing.assert_allclose(ds.x_train, xf[::2])  # float input kept as is


def test_from_arrays_and_integer_float_labels() -> None:
    x, y = blobs((8, 8), shape=(3, 3))
    ds = from_arrays(x, y.astype(np.float64), name="mine", class_names=["a", "b"], seed=1)
    assert ds.name == "mine" and ds.class_names == ("a", "b")
    np.testing.assert_array_equal(np.bincount(ds.y_val), [2, 2])  # ceil(16 * 0.2) = 4
    column = from_arrays(x, y.reshape(-1, 1), name="mine", class_names=["a", "b"], seed=1)  # (N, 1) labels
    assert column.fingerprint == ds.fingerprint


def test_uint16_scaled_by_dtype_max() -> None:
    x = np.full((12, 2, 2), 65535, dtype=np.uint16)
    x[::2] = 1000
    ds = from_arrays(x, np.arange(12) % 2)
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == pytest.approx(1000 / 65535)


# ------------------------------------------------------------------------------------------------ images


def write_pngs(root: Path, counts: dict[str, int], mode: str = "L") -> None:
    from PIL import Image

    for c, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            size = (10 + i % 3, 12)  # sizes differ: everything is resized
            value = 40 + 80 * c
            color = value if mode == "L" else (value, 0, 255 - value)
            Image.new(mode, size, color).save(folder / f"img_{i:02d}.png")


def test_image_folder_grayscale(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    write_pngs(root, {"cat": 8, "dog": 7, "emu": 6})
    (root / "cat" / "notes.txt").write_text("not an image")
    ds = load_image_folder(root, image_size=(16, 12), seed=0)
    assert ds.name == "images:shapes" and ds.class_names == ("cat", "dog", "emu")
    assert ds.input_shape == (16, 12, 1) and len(ds.x_train) + len(ds.x_val) == 21
    np.testing.assert_array_equal(np.bincount(ds.y_val), [2, 2, 1])  # ceil(21 * 0.2) = 5, largest remainder
    for c, value in enumerate((40, 120, 200)):
        np.testing.assert_allclose(ds.x_train[ds.y_train == c], value / 255, atol=1e-6)
    assert load_dataset(root).fingerprint == load_image_folder(root).fingerprint


def test_image_folder_rgb(tmp_path: Path) -> None:
    write_pngs(tmp_path / "rgb", {"a": 6, "b": 6}, mode="RGB")
    ds = load_image_folder(tmp_path / "rgb", image_size=(8, 8), color_mode="rgb")
    assert ds.input_shape == (8, 8, 3)
    np.testing.assert_allclose(ds.x_train[ds.y_train == 1][0, 0, 0], [120 / 255, 0, 135 / 255], atol=1e-6)


# ------------------------------------------------------------------------------------------------ errors


def expect(match: str, func, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=match) as info:
        func(*args, **kwargs)
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    expect(r"expected a \.npz file, found nothing at .*nope\.npz", load_npz, tmp_path / "nope.npz")


def test_unreadable_npz(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    expect(r"readable \.npz.*bad\.npz", load_npz, bad)


def test_missing_keys_lists_found_keys(tmp_path: Path) -> None:
    x, y = blobs()
    msg = expect("expected keys x, y or x_train", load_npz, save(tmp_path, "k.npz", images=x, labels=y))
    assert "found keys: images, labels" in msg and "k.npz" in msg


def test_x_wrong_rank(tmp_path: Path) -> None:
    msg = expect(r"3 dims .* found shape \(10, 4\)", load_npz, save(tmp_path, x=np.zeros((10, 4)), y=np.arange(10)))
    assert "d.npz" in msg


def test_x_wrong_channels_hints_channels_first(tmp_path: Path) -> None:
    x = np.zeros((30, 3, 8, 8), dtype=np.float32)
    msg = expect(r"1 or 3 channels.*\(30, 3, 8, 8\)", load_npz, save(tmp_path, x=x, y=np.arange(30) % 2))
    assert "channels-first" in msg and "d.npz" in msg


def test_non_numeric_x(tmp_path: Path) -> None:
    x = np.full((10, 2, 2), "a")
    expect(r"numeric x.*found dtype <U1.*d\.npz", load_npz, save(tmp_path, x=x, y=np.arange(10) % 2))


def test_nan_and_inf_are_counted(tmp_path: Path) -> None:
    x = np.zeros((20, 3, 3), dtype=np.float32)
    x[0, 0, 0] = x[1, 1, 1] = np.nan
    x[2, 0, 0] = np.inf
    expect(r"found 2 NaN and 1 inf values.*d\.npz", load_npz, save(tmp_path, x=x, y=np.arange(20) % 2))


def test_length_mismatch(tmp_path: Path) -> None:
    x, y = blobs()
    expect(r"x: 60 and y: 59 .*d\.npz", load_npz, save(tmp_path, x=x, y=y[:-1]))


def test_labels_not_integers(tmp_path: Path) -> None:
    x, _ = blobs((10, 10))
    y = np.linspace(0, 1, 20)
    expect(r"integer labels in y, found 18 non-integer values.*d\.npz", load_npz, save(tmp_path, x=x, y=y))


def test_string_labels(tmp_path: Path) -> None:
    x, _ = blobs((10, 10))
    expect(r"integer labels in y, found dtype <U", load_npz, save(tmp_path, x=x, y=np.array(["a", "b"] * 10)))


def test_negative_labels(tmp_path: Path) -> None:
    x, y = blobs()
    expect(r"negative labels \(min -1\).*d\.npz", load_npz, save(tmp_path, x=x, y=y - 1))


def test_labels_with_a_gap(tmp_path: Path) -> None:
    x, y = blobs()
    y = np.where(y == 2, 3, y)
    expect(
        r"contiguous labels 0..K-1, found labels 0..3 with no samples for 2 .*d\.npz",
        load_npz,
        save(tmp_path, x=x, y=y),
    )


def test_one_class_only(tmp_path: Path) -> None:
    x, y = blobs((20,))
    expect(r"at least 2 classes, found 1 .*d\.npz", load_npz, save(tmp_path, x=x, y=y))


def test_bad_one_hot(tmp_path: Path) -> None:
    x, _ = blobs((10, 10))
    expect("not one-hot", load_npz, save(tmp_path, x=x, y=np.full((20, 2), 0.5)))


def test_too_few_samples_in_a_class(tmp_path: Path) -> None:
    x, y = blobs((20, MIN_SAMPLES_PER_CLASS, 20))
    path = save(tmp_path, x=x, y=y, class_names=np.array(["a", "rare", "c"]))
    msg = expect(r"at least 6 samples per class", load_npz, path)
    assert f"found {MIN_SAMPLES_PER_CLASS} for class 'rare'" in msg and "d.npz" in msg


def test_presplit_class_missing_from_val(tmp_path: Path) -> None:
    x, y = blobs((10, 10))
    path = save(tmp_path, x_train=x, y_train=y, x_val=x[:3], y_val=y[:3])
    msg = expect(r"at least 5 training and 1 validation", load_npz, path)
    assert "found 10 training and 0 validation samples for class '1'" in msg


def test_class_names_count_mismatch() -> None:
    x, y = blobs()
    expect(r"expected 3 class names \(labels 0..2\), found 2", from_arrays, x, y, class_names=["a", "b"])


def test_integer_pixels_out_of_range() -> None:
    x, y = blobs()
    expect(r"0..255 .*found values -5..", from_arrays, x.astype(np.int32) - 5, y)


def test_image_that_fails_to_open(tmp_path: Path) -> None:
    write_pngs(tmp_path / "imgs", {"a": 6, "b": 6})
    broken = tmp_path / "imgs" / "b" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    expect(r"could not open .*broken\.png", load_image_folder, tmp_path / "imgs")


def test_empty_class_folder(tmp_path: Path) -> None:
    write_pngs(tmp_path / "imgs", {"a": 6, "b": 6})
    (tmp_path / "imgs" / "c_empty").mkdir()
    expect(r"class folder .*c_empty, found none \(empty class\)", load_image_folder, tmp_path / "imgs")


def test_folder_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    expect(
        r"one sub-folder per class \(at least 2 classes\) in .*flat, found none", load_image_folder, tmp_path / "flat"
    )
    write_pngs(tmp_path / "one", {"only": 8})  # a single class folder used to load as a 1-class dataset
    expect(r"at least 2 classes\) in .*one, found only 'only'", load_image_folder, tmp_path / "one")


def test_unknown_dataset_spec(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2\n")
    expect(
        r"expected 'demo', 'bench:kws', 'bench:vww', a \.npz file or a folder.*data\.csv.*not \.npz",
        load_dataset,
        tmp_path / "data.csv",
    )
    expect(r"nothing at that path", load_dataset, "no-such-thing")


# ------------------------------------------------------------------------------- hostile inputs (issue 10)


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit grey) with one tiny IDAT: a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_huge_label_is_bounded_by_the_sample_count(tmp_path: Path) -> None:
    import resource

    x, y = blobs()
    y[7] = 10**8
    path = save(tmp_path, x=x, y=y)
    assert path.stat().st_size < 16_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    msg = expect(r"labels 0\.\.K-1 with K <= the number of samples \(60\) in y, found label 100000000", load_npz, path)
    assert "d.npz" in msg
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: no 10**8-element set
    # Pre-split: every class needs a validation sample, so the bound holds for y_val too.
    yv = np.minimum(y[:10], 2)
    yv[0] = 12
    expect(r"K <= the number of samples \(10\) in y_val, found label 12", load_npz,
           save(tmp_path, "s.npz", x_train=x, y_train=np.minimum(y, 2), x_val=x[:10], y_val=yv))  # fmt: skip
    expect(r"K <= the number of samples \(60\) in y, found label 1e\+20|found label 100000000000000000000",
           from_arrays, x, np.where(y > 2, 1e20, y).astype(np.float64))  # fmt: skip


def test_npz_header_declaring_a_huge_array(tmp_path: Path) -> None:
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
        archive.writestr("y.npy", header.getvalue())
    expect(r"declaring shape \(1000000, 1000000\) of float32 \(4,000,000,000,000 B\) in a 192 B member", load_npz, path)


def test_decompression_bomb_png_is_a_clean_error(tmp_path: Path) -> None:
    write_pngs(tmp_path / "imgs", {"a": 6, "b": 6})
    png_header_only(tmp_path / "imgs" / "b" / "bomb.png", 20_000, 20_000)  # PIL: DecompressionBombError
    expect(r"at most 16,777,216 pixels, found .*bomb\.png: Image size \(400000000 pixels\)", load_image_folder,
           tmp_path / "imgs")  # fmt: skip
    png_header_only(tmp_path / "imgs" / "b" / "bomb.png", 5_000, 5_000)  # under PIL's limit, over ours
    expect(r"found 5000x5000 in .*bomb\.png", load_image_folder, tmp_path / "imgs")
    png_header_only(tmp_path / "imgs" / "b" / "bomb.png", 30, 30)  # small, but its pixel data is cut short
    expect(r"could not open .*bomb\.png: \w+", load_image_folder, tmp_path / "imgs")


def test_image_folder_refuses_links_leading_outside(tmp_path: Path) -> None:
    from PIL import Image

    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(outside / f"{i}.png")
    root = tmp_path / "data"
    (root / "cats").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8), 30 * i, dtype=np.uint8)).save(root / "cats" / f"{i}.png")
    (root / "dogs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match=r"dogs leads outside the dataset folder .*symbolic link to .*outside"):
        load_image_folder(root)
    (root / "dogs").unlink()
    (root / "dogs").mkdir()
    (root / "dogs" / "0.png").symlink_to(outside / "0.png")
    with pytest.raises(DataError, match=r"0\.png leads outside the dataset folder"):
        load_image_folder(root)
