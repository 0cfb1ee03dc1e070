"""Pruning reuses one traced, tfmot-wrapped training step per base model and prunes exactly as a fresh one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search import training
from search.candidate import _kernel_zero_fractions


@pytest.mark.slow
def test_a_reused_pruning_session_prunes_like_a_fresh_one_without_tracing_again() -> None:
    from search import _lazy
    from search.data import load_demo

    data = load_demo(seed=0)
    settings = training.TrainSettings(epochs=1, finetune_epochs=1, seed=0)
    _lazy.keras().utils.set_random_seed(0)
    base, _ = training.train_base("mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings)
    before = [w.copy() for w in base.get_weights()]
    training._PRUNING_SESSIONS.clear()

    def pruned(sparsity: float, key: str | None) -> tuple[float, float]:
        model = training.prune(training.clone(base), sparsity, data.x_train, data.y_train, settings, key=key)
        return _kernel_zero_fractions(model)[1], training.keras_accuracy(model, data.x_val, data.y_val)

    fresh = pruned(0.8, None)
    assert not training._PRUNING_SESSIONS.items  # no key: nothing kept
    reused = {s: pruned(s, "base-a") for s in (0.5, 0.8)}
    (session,) = training._PRUNING_SESSIONS.items.values()
    traces = session.wrapped.train_function.experimental_get_tracing_count()
    assert pruned(0.8, "base-a") == reused[0.8]
    assert session.wrapped.train_function.experimental_get_tracing_count() == traces  # no new trace
    for s in (0.5, 0.8):
        assert reused[s][0] == pytest.approx(s, abs=0.01)  # pruned conv/dense kernels reach the sparsity
    assert reused[0.8][0] == pytest.approx(fresh[0], abs=0.005)
    assert reused[0.8][1] == pytest.approx(fresh[1], abs=0.01)  # the same accuracy as a fresh wrapper's
    for w, w0 in zip(base.get_weights(), before, strict=True):  # the base model is never touched
        np.testing.assert_array_equal(w, w0)
    training._PRUNING_SESSIONS.clear()


def test_the_session_cache_keeps_the_most_recently_used() -> None:
    cache = training._Recent(2)
    a, b, c = object(), object(), object()
    cache.put("a", a)  # type: ignore[arg-type]
    cache.put("b", b)  # type: ignore[arg-type]
    assert cache.get("a") is a  # now the most recent
    cache.put("c", c)  # type: ignore[arg-type]
    assert list(cache.items) == ["a", "c"]
    assert cache.get("b") is None


@pytest.mark.slow
def test_a_session_serves_another_build_of_the_same_base_and_rebuilds_for_another_architecture() -> None:
    """Two studies in one process (a notebook) train the same base key twice: Keras names the second
    build's layers differently. The session matches layers by position, and a model of another shape
    under the same key gets a session of its own."""
    from search.data import load_demo

    data = load_demo(seed=0)
    settings = training.TrainSettings(epochs=1, finetune_epochs=1, seed=0)
    training._PRUNING_SESSIONS.clear()
    first, _ = training.train_base("mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings)
    second, _ = training.train_base("mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings)
    assert [la.name for la in first.layers] != [lb.name for lb in second.layers]
    for base in (first, second):
        model = training.prune(training.clone(base), 0.5, data.x_train, data.y_train, settings, key="same")
        assert _kernel_zero_fractions(model)[1] == pytest.approx(0.5, abs=0.01)
    assert len(training._PRUNING_SESSIONS.items) == 1
    wider, _ = training.train_base("mobilenet_v1", 0.5, data.x_train, data.y_train, data.num_classes, settings)
    model = training.prune(training.clone(wider), 0.5, data.x_train, data.y_train, settings, key="same")
    assert _kernel_zero_fractions(model)[1] == pytest.approx(0.5, abs=0.01)
    training._PRUNING_SESSIONS.clear()


@pytest.mark.slow
def test_every_fit_traces_its_training_step_once_and_trains_the_same_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimizer's slots and the compiled metrics are built before the first fit, so Keras traces
    the training step once, not twice; the trained weights are those of a fit that traces twice. The
    pruning session wraps only the layers that have weights to prune."""
    from search.data import load_demo

    data = load_demo(seed=0)
    settings = training.TrainSettings(epochs=1, finetune_epochs=1, seed=0)

    def base() -> object:
        return training.train_base("mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings)[0]

    once = base()
    assert once.train_function.experimental_get_tracing_count() == 1  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:
        patch.setattr(training, "_build_for_fit", lambda *args: None)
        twice = base()
    assert twice.train_function.experimental_get_tracing_count() == 2  # type: ignore[attr-defined]
    for a, b in zip(once.get_weights(), twice.get_weights(), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)

    training._PRUNING_SESSIONS.clear()
    pruned = training.prune(training.clone(once), 0.5, data.x_train, data.y_train, settings, key="traced-once")
    (session,) = training._PRUNING_SESSIONS.items.values()
    assert session.wrapped.train_function.experimental_get_tracing_count() == 1
    wrappers = [layer for layer in session.wrapped.layers if hasattr(layer, "pruning_vars")]
    assert wrappers and all(layer.pruning_vars for layer in wrappers)  # only layers with weights to prune
    assert {type(layer.layer).__name__ for layer in wrappers} == {"Conv2D", "Dense"}
    qat = training.quantize_aware(pruned, data.x_train, data.y_train, settings, keep_sparsity=True)
    assert qat.train_function.experimental_get_tracing_count() == 1
    training._PRUNING_SESSIONS.clear()


@pytest.mark.slow
def test_pruned_weights_are_kept_per_base_and_sparsity() -> None:
    from search import _lazy
    from search.families import build_model

    keras = _lazy.keras()
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 4
    settings = training.TrainSettings(1, 1, 32, 1e-3, 0)
    base = build_model("mobilenet_v1", (8, 8, 1), 4, 0.25, seed=0)
    digest = training.weights_digest(base)
    assert digest == training.weights_digest(training.clone(base))
    pruned = training.prune(training.clone(base), 0.5, x, y, settings)
    training.keep_pruned(pruned, training.pruned_key(digest, settings, x.shape, 0.5))

    model = training.clone(base)
    assert training.load_pruned(model, training.pruned_key(digest, settings, x.shape, 0.5))
    for a, b in zip(model.get_weights(), pruned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # another sparsity, another base's weights, other training settings or another architecture: nothing
    assert not training.load_pruned(training.clone(base), training.pruned_key(digest, settings, x.shape, 0.6))
    other = training.clone(base)
    other.layers[1].set_weights([w + 1 for w in other.layers[1].get_weights()])
    assert training.weights_digest(other) != digest
    assert not training.load_pruned(other, training.pruned_key(training.weights_digest(other), settings, x.shape, 0.5))
    other_settings = training.TrainSettings(1, 2, 32, 1e-3, 0)
    assert not training.load_pruned(training.clone(base), training.pruned_key(digest, other_settings, x.shape, 0.5))
    wider = build_model("mobilenet_v1", (8, 8, 1), 4, 0.5, seed=0)
    assert not training.load_pruned(wider, training.pruned_key(digest, settings, x.shape, 0.5))
    # dense candidates keep nothing; switched off, nothing is kept or loaded
    assert training.pruned_key(digest, settings, x.shape, 0.0) is None
    training.keep_pruned(base, training.pruned_key(digest, settings, x.shape, 0.0))
    assert len(training._PRUNED_WEIGHTS.items) == 1
    key = training.pruned_key(digest, settings, x.shape, 0.5)
    training.REUSE_PRUNED_WEIGHTS = False
    try:
        assert training.pruned_key(digest, settings, x.shape, 0.5) is None
        assert not training.load_pruned(training.clone(base), key)
    finally:
        training.REUSE_PRUNED_WEIGHTS = True


def test_pruned_weights_saved_in_a_cache_folder_serve_another_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What one worker pruned, another (here: this process with its memory cleared) loads from the
    study's cache folder, bit-exact; a changed or undigested file is pruned again, with a warning."""
    from search.families import build_model

    x = np.random.default_rng(1).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 4
    settings = training.TrainSettings(1, 1, 32, 1e-3, 0)
    base = build_model("mobilenet_v1", (8, 8, 1), 4, 0.25, seed=0)
    digest = training.weights_digest(base)
    pruned = training.prune(training.clone(base), 0.5, x, y, settings)
    training.keep_pruned(pruned, training.pruned_key(digest, settings, x.shape, 0.5), cache_dir=tmp_path)
    (saved,) = (tmp_path / training.PRUNED_FOLDER).glob("*.npz")
    assert training.digest_path(saved).read_text().strip() == training.file_sha256(saved)

    def loads() -> bool:
        training._PRUNED_WEIGHTS.clear()
        return training.load_pruned(
            training.clone(base), training.pruned_key(digest, settings, x.shape, 0.5), cache_dir=tmp_path
        )

    training._PRUNED_WEIGHTS.clear()
    model = training.clone(base)
    assert training.load_pruned(model, training.pruned_key(digest, settings, x.shape, 0.5), cache_dir=tmp_path)
    for a, b in zip(model.get_weights(), pruned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(training._PRUNED_WEIGHTS.items) == 1  # now in memory too
    # without the folder, or for another sparsity or base, nothing
    training._PRUNED_WEIGHTS.clear()
    assert not training.load_pruned(training.clone(base), training.pruned_key(digest, settings, x.shape, 0.5))
    assert not training.load_pruned(
        training.clone(base), training.pruned_key(digest, settings, x.shape, 0.6), cache_dir=tmp_path
    )
    assert not training.load_pruned(
        training.clone(base), training.pruned_key("0" * 64, settings, x.shape, 0.5), cache_dir=tmp_path
    )
    # a file changed after saving, or whose digest is gone, is not loaded
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0xFF
    saved.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="search.training"):
        assert not loads()
    assert "pruned weights" in caplog.text and "recorded" in caplog.text
    training.digest_path(saved).unlink()
    assert not loads()
    assert "has no recorded SHA-256" in caplog.text
    training._PRUNED_WEIGHTS.clear()


def test_batches_cover_every_sample_once_per_epoch_in_a_seeded_order() -> None:
    """``batches`` is ``fit(shuffle=True)``'s batching: every sample once per epoch, the last batch
    smaller, a new order every epoch, and the same orders again for the same seed."""
    rng = np.random.default_rng(3)
    x = rng.random((150, 4, 2, 1), dtype=np.float32)
    y = np.arange(150, dtype=np.int64)  # the label names its sample

    def epochs(seed: int, n: int = 2) -> list[list[np.ndarray]]:
        pipeline = training.batches(x, y, 64, seed)
        return [[b.numpy() for _, b in pipeline] for _ in range(n)]

    first = epochs(seed=0)
    for epoch in first:
        assert [len(b) for b in epoch] == [64, 64, 22]
        assert sorted(np.concatenate(epoch).tolist()) == list(range(150))
    assert not np.array_equal(np.concatenate(first[0]), np.concatenate(first[1]))  # reshuffled each epoch
    again = epochs(seed=0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(epochs(seed=1)[0]), np.concatenate(first[0]))
    xb, yb = next(iter(training.batches(x, y, 64, 0)))
    np.testing.assert_array_equal(xb.numpy(), x[yb.numpy()])  # each sample stays with its label


def test_a_cached_base_model_is_kept_in_memory_while_its_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The second candidate of a width gets the base model without loading the ``.keras`` file again;
    a file another worker saved over it, or one changed since, is read again with the usual checks."""
    x = np.random.default_rng(2).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 4
    settings = training.TrainSettings(1, 1, 32, 1e-3, 0)

    def base() -> tuple[object, bool]:
        return training.train_base("mobilenet_v1", 0.25, x, y, 4, settings, cache_dir=tmp_path, key="k")

    training.clear_cache(tmp_path)
    trained, reused = base()
    assert not reused
    loads: list[Path] = []
    load_cached = training.load_cached
    monkeypatch.setattr(training, "load_cached", lambda p: loads.append(p) or load_cached(p))
    again, reused = base()
    assert reused and again is trained and not loads  # from memory, the file not read
    # another worker's training saved over the file: that one is loaded, and kept from then on
    other = training.clone(trained)  # type: ignore[arg-type]
    other.set_weights([w + 1 for w in other.get_weights()])
    cached = tmp_path / "k.keras"
    training._save_with_digest(cached, other.save)
    loaded, reused = base()
    assert reused and loaded is not trained and loads == [cached]
    np.testing.assert_array_equal(loaded.get_weights()[0], other.get_weights()[0])  # type: ignore[attr-defined]
    assert base()[0] is loaded and len(loads) == 1
    # a file changed after it was saved: not served from memory either, rebuilt with the usual warning
    with open(cached, "ab") as f:
        f.write(b"\0")
    with caplog.at_level("WARNING", logger="search.training"):
        rebuilt, reused = base()
    assert not reused and rebuilt is not loaded and any("SHA-256" in r.getMessage() for r in caplog.records)
    training.clear_cache(tmp_path)  # forgets the kept models too
    assert not training._BASE_MODELS.items and not base()[1]
    training.clear_cache(tmp_path)


def test_two_workers_needing_one_base_model_train_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads asking for the same uncached base model at the same moment: one trains it, the
    other waits for it and gets it, and the model is trained once."""
    import threading

    x = np.random.default_rng(4).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 4
    settings = training.TrainSettings(1, 1, 32, 1e-3, 0)
    trainings: list[int] = []  # the base model's fit is the only one in train_base
    fit = training._fit
    monkeypatch.setattr(training, "_fit", lambda *a: trainings.append(1) or fit(*a))
    start = threading.Barrier(2)
    got: list[tuple[object, bool]] = []

    def worker() -> None:
        start.wait()
        got.append(training.train_base("mobilenet_v1", 0.25, x, y, 4, settings, cache_dir=tmp_path, key="k"))

    training.clear_cache(tmp_path)
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trainings) == 1
    assert sorted(reused for _, reused in got) == [False, True]
    assert got[0][0] is got[1][0]  # the waiter gets the model the other thread kept
    assert training.digest_path(tmp_path / "k.keras").read_text().strip() == training.file_sha256(tmp_path / "k.keras")
    training.clear_cache(tmp_path)


def test_a_worker_waits_for_the_base_model_another_process_is_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While another process holds a base model's training lock, a worker that needs the model waits,
    says so, and loads what that process saved instead of training it itself."""
    import subprocess
    import sys
    import time

    x = np.random.default_rng(5).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 4
    settings = training.TrainSettings(1, 1, 32, 1e-3, 0)
    made, cache = tmp_path / "made", tmp_path / "cache"
    training.clear_cache(made)
    trained, _ = training.train_base("mobilenet_v1", 0.25, x, y, 4, settings, cache_dir=made, key="k")
    training._BASE_MODELS.clear()
    cache.mkdir()
    # The other "worker": takes the lock, holds it 1.5 s, then saves the model as train_base does
    # (digest first, then the model, each moved into place) and exits.
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, shutil, sys, time\n"
            "made, cache = sys.argv[1], sys.argv[2]\n"
            "fd = os.open(os.path.join(cache, 'k.keras.lock'), os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(1.5)\n"
            "for name in ('k.keras.sha256', 'k.keras'):\n"
            "    shutil.copy(os.path.join(made, name), os.path.join(cache, name + '.tmp'))\n"
            "    os.replace(os.path.join(cache, name + '.tmp'), os.path.join(cache, name))\n",
            str(made),
            str(cache),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdout.readline().strip() == "locked"
    trainings: list[int] = []  # the base model's fit is the only one in train_base
    fit = training._fit
    monkeypatch.setattr(training, "_fit", lambda *a: trainings.append(1) or fit(*a))
    t0 = time.monotonic()
    with caplog.at_level("INFO", logger="search.training"):
        model, reused = training.train_base("mobilenet_v1", 0.25, x, y, 4, settings, cache_dir=cache, key="k")
    waited = time.monotonic() - t0
    assert other.wait(timeout=30) == 0
    assert reused and not trainings
    assert waited >= 1.0
    assert "being trained by another worker: waiting for it" in caplog.text
    for a, b in zip(model.get_weights(), trained.get_weights(), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a, b)
    training.clear_cache(cache)
    training.clear_cache(made)


def test_a_work_copy_is_kept_per_base_and_thread_and_starts_from_the_base_weights(tmp_path: Path) -> None:
    """Pruned and quantisation-aware candidates start from a copy of the base that is cloned once per
    base and thread and gets the base's weights set again on every later call."""
    import threading

    from search.families import build_model

    training.clear_cache(tmp_path)
    base = build_model("mobilenet_v1", (8, 8, 1), 4, 0.25, seed=0)
    copy = training.work_copy(base)
    assert copy is not base
    for a, b in zip(copy.get_weights(), base.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    before = [w.copy() for w in base.get_weights()]
    copy.set_weights([w + 1 for w in copy.get_weights()])  # a candidate's fine-tune changes its copy
    again = training.work_copy(base)
    assert again is copy  # not cloned again
    for a, b, c in zip(again.get_weights(), base.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # back to the base's weights
        np.testing.assert_array_equal(b, c)  # and the base untouched throughout
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(training.work_copy(base)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not copy  # another thread gets its own copy
    other = build_model("mobilenet_v1", (8, 8, 1), 4, 0.25, seed=1)
    assert training.work_copy(other) is not copy  # another base model, another copy
    assert training.work_copy(base) is copy
    training.clear_cache(tmp_path)
    assert not training._WORK_COPIES.items and training.work_copy(base) is not copy
    training.clear_cache(tmp_path)


def _live_training_steps() -> int:
    """Traced Keras training steps (``train_function`` graphs) still alive in this process."""
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(isinstance(o, FuncGraph) and o.name == "train_function" for o in gc.get_objects())


@pytest.mark.slow
def test_a_finished_fit_leaves_no_traced_step_behind() -> None:
    """TensorFlow keeps every traced training step alive through a gradient closure it registers
    globally (tensorflow#97697); a search traces one per quantisation-aware candidate. After the fit
    the closures are released, so a dropped model's step is freed, and later fits still train."""
    from search.data import load_demo
    from search.families import build_model

    data = load_demo(seed=0)
    settings = training.TrainSettings(epochs=1, finetune_epochs=1, seed=0)
    base = build_model("mobilenet_v1", (8, 8, 1), data.num_classes, 0.25, seed=0)
    registry = training._gradient_registry()
    assert registry is not None  # this TensorFlow keeps them where the release looks

    def qat_accuracy() -> float:
        model = training.quantize_aware(training.clone(base), data.x_train, data.y_train, settings, keep_sparsity=False)
        return training.keras_accuracy(model, data.x_val, data.y_val)

    first = qat_accuracy()
    names, steps = set(registry), _live_training_steps()
    again = [qat_accuracy() for _ in range(3)]
    assert _live_training_steps() == steps  # three more traced steps, all freed (3 more without the release)
    assert set(registry) == names
    assert again == pytest.approx([first] * 3, abs=0.01)  # the later fits trained as the first did


def test_gradient_closures_are_released_when_no_fit_is_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit in another thread may still be tracing: what fits registered is removed only when the
    last running fit ends, and only the ``tf.custom_gradient`` names they registered."""
    registry: dict[str, object] = {"CustomGradient-1": 1, "Conv2D": 2}
    monkeypatch.setattr(training, "_gradient_registry", lambda: registry)
    with training.gradient_closures_released():
        registry["CustomGradient-2"] = 3
        with training.gradient_closures_released():  # a second fit running meanwhile
            registry["CustomGradient-3"] = 4
            registry["MyOp"] = 5
        assert "CustomGradient-3" in registry  # the first fit may still be tracing: kept
    assert registry == {"CustomGradient-1": 1, "Conv2D": 2, "MyOp": 5}
    assert not training._closures_to_release and training._fits_running == 0
