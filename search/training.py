"""Train a base model (cached), prune it, and fine-tune it quantisation-aware.

A trained base model is keyed by (dataset fingerprint, family, width, input resolution,
training settings, seed): every sparsity and precision variant of it starts from the same
weights, so a search never retrains what it already has.

The cache (``<study>/base_models/<key>.keras``) is read defensively: only Keras' ``.keras`` zip
format is loaded, with ``safe_mode=True`` (no Lambda or other code deserialised), and only when its
SHA-256 equals the digest written beside it (``<key>.keras.sha256``) when it was saved. Anything
else (an HDF5 file, a file changed after saving, a digest missing) is a cache miss: a warning is
logged and the base model is trained again and saved over it.

One base model is trained once per cache folder, whatever the number of workers: a worker that
misses the cache takes ``<key>.keras.lock`` beside it (``flock``) for its training and save, and a
worker that needs the same base model meanwhile waits for that file instead of training it too.

The weights a pruning fine-tune ends with are kept per (base model's weights, training settings,
data shape, sparsity): in memory, and in ``<cache folder>/pruned/<hash>.npz`` with a SHA-256 beside
it, read only with ``allow_pickle=False`` and only when the digest matches. A candidate of the same
width and sparsity at another precision, in any worker of the study, starts from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from search import _lazy
from search.errors import CandidateError
from search.names import file_sha256

if TYPE_CHECKING:
    import tf_keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """How a base model is trained and fine-tuned."""

    epochs: int = 5
    finetune_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }


def base_key(
    fingerprint: str,
    family: str,
    width: float,
    input_shape: tuple[int, ...],
    settings: TrainSettings,
    depth: int | None = None,
) -> str:
    """A stable identifier of a trained base model."""
    blob = json.dumps(
        {
            "data": fingerprint,
            "family": family,
            "width": round(width, 6),
            "depth": depth,
            "shape": list(input_shape),
            **settings.key(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _compile(model: tf_keras.Model, learning_rate: float) -> None:
    keras = _lazy.keras()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _build_for_fit(model: tf_keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """Create the optimizer's slots and the compiled loss and metrics before the first ``fit``.

    Keras creates them inside the first trace of its training step, and a ``tf.function`` whose
    first trace creates variables is traced a second time: building them here halves the tracing
    of every fit of a freshly compiled model (the base model's training, a pruning session's first
    fine-tune, every quantisation-aware fine-tune). The weights, and so the trained model, are the
    same either way. It uses tf_keras' compile containers; should they change, the fit still works
    and only traces twice again (tests/test_training.py checks the single trace).
    """
    tf = _lazy.tensorflow()
    try:
        model.optimizer.build(model.trainable_variables)
        pred = model(x[:1], training=False)
        model.compiled_loss.build(pred)
        model.compiled_metrics.build(pred, tf.constant(y[:1]))
    except (AttributeError, TypeError, ValueError) as exc:  # a tf_keras without these containers
        log.debug("could not build the optimizer and metrics before fit (%s): the step is traced twice", exc)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Any:
    """``x`` and ``y`` as ``fit(x, y, batch_size=..., shuffle=True)`` batches them (a fresh full shuffle
    every epoch, the last batch smaller), as a ``tf.data`` pipeline with tf.data's autotuning off.
    The order depends on ``seed`` only, so the same call trains the same way every time in a process.

    Given numpy arrays, ``fit`` builds its own pipeline with an autotuned prefetch. On this 2-core
    machine, one such ``fit`` in two or three then spent 0.4-0.9 s after its last epoch, while it
    returned: a third of a 2.3 s pruning fine-tune of the KWS-shaped workload. A 96x96 base model's
    fit sometimes took 10 s more than its usual 13-15 s (``benchmarks/fit_input.py``). A tf.data
    pipeline with autotuning on still took the 0.4 s now and then; with it off, no fit did in the
    same experiments. The arrays are in memory, so a batch is a gather and needs no prefetch. The
    shuffle holds indices, so the pipeline keeps one copy of the data, as Keras' own does.
    """
    tf = _lazy.tensorflow()
    options = tf.data.Options()
    options.autotune.enabled = False
    x_all, y_all = tf.constant(x), tf.constant(y)  # one copy of the data: the shuffle holds indices, not samples
    order = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    pipeline = order.batch(batch_size).map(lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)))
    return pipeline.with_options(options)


def _fit(
    model: tf_keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    epochs: int,
    callbacks: Sequence[Any] = (),
) -> None:
    """Every ``fit`` of this module: ``epochs`` over :func:`batches`, with the gradient closures its
    trace registered released afterwards (:func:`gradient_closures_released`)."""
    with gradient_closures_released():
        model.fit(
            batches(x, y, settings.batch_size, settings.seed), epochs=epochs, callbacks=list(callbacks), verbose=0
        )


def keras_accuracy(model: tf_keras.Model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of a Keras model (the reference the deployed artifact is compared with).

    The model is called eagerly in inference mode, ``batch`` samples at a time: ``predict`` would
    trace a function for every new model (twice, its last batch being smaller), which costs more
    than the inference itself on a few hundred validation samples, and warns about retracing."""
    hits = 0
    for i in range(0, len(x), batch):
        probs = np.asarray(model(x[i : i + batch], training=False))
        hits += int(np.sum(np.argmax(probs, axis=1) == y[i : i + batch]))
    return hits / len(x) if len(x) else 0.0


def train_base(
    family: str,
    width: float,
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    settings: TrainSettings,
    *,
    cache_dir: Path | None = None,
    key: str | None = None,
    depth: int | None = None,
) -> tuple[tf_keras.Model, bool]:
    """Train (or load from ``cache_dir``) the base model. Returns (model, reused).

    With ``cache_dir`` the model is also kept in memory (:func:`_kept_base`) and the same object is
    returned to later calls in this process: clone it (:func:`clone`) before changing it. A miss is
    trained under :func:`_training_lock`: while another worker trains the same model this call waits
    for it and returns that worker's model (reused), so its time includes the wait.
    """
    from search.families import build_model

    def train() -> tf_keras.Model:
        _lazy.keras().utils.set_random_seed(settings.seed)
        shape = tuple(int(d) for d in x_train.shape[1:])
        model = build_model(family, shape, num_classes, width, seed=settings.seed, depth=depth)  # type: ignore[arg-type]
        _compile(model, settings.learning_rate)
        _build_for_fit(model, x_train, y_train)
        _fit(model, x_train, y_train, settings, settings.epochs)
        return model

    cached = cache_dir / f"{key}.keras" if cache_dir is not None and key else None
    if cached is None:
        return train(), False
    seen = _file_state(cached)
    if seen is not None and (model := _cached_base(cached)) is not None:
        return model, True
    with _training_lock(cached):
        if _file_state(cached) != seen and (model := _cached_base(cached)) is not None:
            return model, True  # another worker trained it while this one waited (or before it asked)
        model = train()
        _keep_base(cached, model, _save_with_digest(cached, model.save))
    return model, False


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of ``path``, or None when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _cached_base(cached: Path) -> tf_keras.Model | None:
    """The base model in the cache file ``cached`` (kept in memory, else loaded with its checks), or None."""
    model = _kept_base(cached)
    if model is None and (model := load_cached(cached)) is not None:
        _keep_base(cached, model, file_sha256(cached))
    return model


@contextmanager
def _training_lock(cached: Path) -> Iterator[None]:
    """Hold ``<cached>.lock`` (``flock``, exclusive) while this worker trains and saves ``cached``.

    When another worker holds it, that worker is training the same base model: this one logs that it
    waits and blocks until the lock is free (the kernel frees it when its holder ends, killed or
    not). Threads of one process exclude each other too: each opens the file itself. On a system
    without ``fcntl`` there is no lock and two workers may both train.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{cached}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("base model %s is being trained by another worker: waiting for it", cached.name)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock too


def _keep_base(cached: Path, model: tf_keras.Model, digest: str) -> None:
    """Keep ``model`` in memory as the content of the cache file ``cached`` whose SHA-256 is ``digest``."""
    _BASE_MODELS.put(cached.resolve(), (digest, model))


def _kept_base(cached: Path) -> tf_keras.Model | None:
    """The base model kept in memory for ``cached``, while the file still holds what it was kept as.

    The file stays the source of truth: when it changed since (another worker saved its own
    training over it, or anything else wrote it), or its recorded digest no longer matches, the
    kept model is dropped and the file is read as on a first load, with its checks and warnings.
    Skips about 0.2 s of ``.keras`` loading per candidate (digits, width 0.5).
    """
    path = cached.resolve()
    kept = _BASE_MODELS.get(path)
    if kept is None:
        return None
    digest, model = kept
    try:
        same = digest_path(cached).read_text().strip() == digest == file_sha256(cached)
    except OSError:
        same = False
    if not same:
        _BASE_MODELS.drop(path)
        return None
    return model


def digest_path(cached: Path) -> Path:
    """Where the SHA-256 of a cached base model is kept: ``<key>.keras.sha256`` beside it."""
    return cached.with_name(cached.name + ".sha256")


def _save_with_digest(path: Path, write: Callable[[str], Any]) -> str:
    """Save ``path`` through ``write(temporary file beside it)``, record its SHA-256 beside it, then
    move it into place: atomic, so concurrent workers never see half a file. Returns the SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        digest = file_sha256(Path(tmp))
        _write_atomic(digest_path(path), digest + "\n")
        os.replace(tmp, path)
        return digest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _digest_matches(path: Path, what: str, instead: str) -> bool:
    """True when ``path``'s SHA-256 equals the one recorded beside it; else False, with a warning."""
    try:
        recorded = digest_path(path).read_text().strip()
    except OSError:
        log.warning("%s %s has no recorded SHA-256 (%s): not loaded, %s", what, path, digest_path(path), instead)
        return False
    actual = file_sha256(path)
    if actual != recorded:
        log.warning(
            "%s %s has SHA-256 %s, recorded %s: not loaded, %s", what, path, actual[:16], recorded[:16], instead
        )
        return False
    return True


def load_cached(cached: Path) -> tf_keras.Model | None:
    """The base model cached at ``cached``, or None (a miss, with a warning) when it is not a ``.keras``
    zip archive, does not match its recorded SHA-256, or does not load in Keras' safe mode."""
    if not zipfile.is_zipfile(cached):
        log.warning(
            "base-model cache %s is not a .keras zip archive (HDF5 or other format): not loaded, rebuilt", cached
        )
        return None
    if not _digest_matches(cached, "base-model cache", "rebuilt"):
        return None
    try:
        return _lazy.keras().models.load_model(cached, safe_mode=True)
    except Exception as exc:  # a corrupt, incompatible or unsafe entry is rebuilt, not fatal
        log.warning("base-model cache %s does not load in safe mode (%s): rebuilt", cached, exc)
        return None


def clone(model: tf_keras.Model) -> tf_keras.Model:
    """An independent copy with the same weights."""
    keras = _lazy.keras()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def work_copy(base: tf_keras.Model) -> tf_keras.Model:
    """A copy of ``base`` holding its weights, for a candidate to prune or fine-tune without changing ``base``.

    The copy is kept, per base model and thread, for the next call, which sets the base's weights
    into it again instead of cloning: cloning the Functional model costs 0.09 s (digits, width
    0.5), 0.11 s (KWS-shaped, ds_cnn 0.5) and 0.3-0.5 s (96x96, mobilenet_v1 0.25); setting its
    weights 5-17 ms. So a call overwrites the copy the previous call (same base, same thread)
    returned: a thread uses one at a time, as a search worker evaluates one candidate at a time.
    """
    key = (id(base), threading.get_ident())
    kept = _WORK_COPIES.get(key)
    if kept is not None and kept[0] is base:  # the same object, not another one at a reused address
        copy = kept[1]
        copy.set_weights(base.get_weights())
        return copy
    copy = clone(base)
    _WORK_COPIES.put(key, (base, copy))
    return copy


def prune(
    model: tf_keras.Model,
    sparsity: float,
    x_train: np.ndarray,
    y_train: np.ndarray,
    settings: TrainSettings,
    *,
    key: str | None = None,
    callbacks: Sequence[Any] = (),
) -> tf_keras.Model:
    """Magnitude-prune to ``sparsity`` with a PolynomialDecay schedule and a short fine-tune.

    tfmot's default pruning frequency is 100 steps, far more than a short fine-tune has, so the
    schedule prunes about eight times (every ``total // 8`` steps) and reaches the final sparsity
    at ~70% of the fine-tune; the remaining steps recover accuracy at that sparsity. Returns
    ``model`` itself with the pruned weights, recompiled.

    With ``key`` (the base model's :func:`base_key`) the tfmot-wrapped model, its compiled and
    traced training step and its schedule are kept in this process (:class:`_PruningSession`) and
    reused by the next candidate of the same base at any sparsity: the final sparsity is a variable
    the traced step reads, the wrapper's masks, thresholds and step counter and the optimizer's
    state are reset, and the candidate's weights are copied in. TensorFlow then does not trace the
    wrapped training step again for every pruned candidate, the cost that made a pruned candidate
    2.4x a dense one. Without ``key`` a fresh wrapped model is built and dropped.

    ``callbacks`` are added to the fine-tune's ``fit`` (the early-stopping checkpoints of
    :mod:`search.early_stop`); one that sets ``stop_training`` ends the fine-tune early.
    """
    if sparsity <= 0:
        return model
    steps_per_epoch = math.ceil(len(x_train) / settings.batch_size)
    cache_key = (key, settings, len(x_train)) if key and REUSE_PRUNING_SESSIONS else None
    session = _PRUNING_SESSIONS.get(cache_key) if cache_key else None
    if session is not None and session.signature != _signature(model):
        session = None  # same key, another build of the model (a second study in this process): start afresh
    if session is None:
        session = _PruningSession(model, steps_per_epoch, settings, x_train[:1], y_train[:1])
        if cache_key:
            _PRUNING_SESSIONS.put(cache_key, session)
    session.run(model, float(sparsity), x_train, y_train, callbacks)
    _compile(model, settings.learning_rate)
    return model


class _PruningSession:
    """A tfmot-wrapped private copy of a base model, compiled once, that prunes any copy of that base.

    The wrapped model is built from a clone, so the model a caller passes in is never wrapped: its
    weights are copied in before the fine-tune and the pruned weights copied back after it.
    """

    def __init__(
        self,
        model: tf_keras.Model,
        steps_per_epoch: int,
        settings: TrainSettings,
        x_sample: np.ndarray,
        y_sample: np.ndarray,
    ) -> None:
        tf, tfmot = _lazy.tensorflow(), _lazy.tfmot()
        total = max(2, steps_per_epoch * max(1, settings.finetune_epochs))
        frequency = max(1, total // 8)
        end_step = frequency * max(1, int(total * 0.7) // frequency)
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=end_step, frequency=frequency
        )
        # The traced step reads the final sparsity from this variable (PolynomialDecay only does
        # arithmetic with it), so one trace serves every sparsity.
        self.final_sparsity = tf.Variable(0.5, trainable=False, dtype=tf.float32, name="tinyfront_final_sparsity")
        schedule.final_sparsity = self.final_sparsity
        self.signature = _signature(model)
        self.wrapped = tfmot.sparsity.keras.prune_low_magnitude(
            clone(model), pruning_schedule=schedule, pruning_policy=_weights_only_policy()
        )
        _compile(self.wrapped, settings.learning_rate / 2)
        _build_for_fit(self.wrapped, x_sample, y_sample)
        self.initial = self.wrapped.get_weights()  # masks 1, thresholds 0, pruning step -1
        self.settings = settings

    def _pairs(self, model: tf_keras.Model) -> list[tuple[Any, Any]]:
        """(the caller's layer, the same layer inside the wrapped copy) for every layer with weights, by
        position: layer names differ between two builds of one architecture in a process."""
        inner = [getattr(layer, "layer", layer) for layer in self.wrapped.layers]
        return [(a, b) for a, b in zip(model.layers, inner, strict=True) if a.weights]

    def run(
        self,
        model: tf_keras.Model,
        sparsity: float,
        x_train: np.ndarray,
        y_train: np.ndarray,
        callbacks: Sequence[Any] = (),
    ) -> None:
        tfmot = _lazy.tfmot()
        self.wrapped.set_weights(self.initial)
        pairs = self._pairs(model)
        for outer, inner in pairs:
            inner.set_weights(outer.get_weights())
        reset_optimizer(self.wrapped)
        self.final_sparsity.assign(sparsity)
        _fit(
            self.wrapped,
            x_train,
            y_train,
            self.settings,
            max(1, self.settings.finetune_epochs),
            [tfmot.sparsity.keras.UpdatePruningStep(), *callbacks],
        )
        for outer, inner in pairs:
            outer.set_weights(inner.get_weights())


#: Prefix of the names under which ``tf.custom_gradient`` registers its gradient closures.
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"
_FITS_LOCK = threading.Lock()
_fits_running = 0
_closures_to_release: set[str] = set()


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's global gradient registry (name -> gradient function), or None when this
    TensorFlow keeps it elsewhere (then nothing is released)."""
    try:
        from tensorflow.python.framework import ops

        registry = ops.gradient_registry._registry
    except (ImportError, AttributeError):
        return None
    return registry if isinstance(registry, dict) else None


@contextmanager
def gradient_closures_released() -> Iterator[None]:
    """Around a ``fit``: forget the gradient closures TensorFlow registered while it traced the step.

    Tracing a Keras training step registers a ``tf.custom_gradient`` closure (the optimizer's
    gradient all-reduce) in TensorFlow's global gradient registry, which never removes it; the
    closure holds tensors of the traced graph, so every traced step stays in memory for the life
    of the process (tensorflow/tensorflow#97697, keras-team/tf-keras#286). A search traces a new
    step for every quantisation-aware candidate, and each one kept about 11,000 Python objects that
    every garbage collection after a trial walked: 0.015 s after the first trial of a digits search
    on the full space, 0.30 s after the 120th. A closure is looked up only while its step is traced
    (the gradients become part of the traced graph), so the names registered during a fit are
    removed once no fit is running in this process (another thread's fit may be tracing).
    """
    global _fits_running
    registry = _gradient_registry()
    with _FITS_LOCK:
        before = set(registry) if registry is not None else set()
        _fits_running += 1
    try:
        yield
    finally:
        with _FITS_LOCK:
            _fits_running -= 1
            if registry is not None:
                # list(): one step under the GIL, while another thread may register a closure
                _closures_to_release.update(
                    name for name in list(registry) if name.startswith(CUSTOM_GRADIENT_PREFIX) and name not in before
                )
                if not _fits_running:
                    for name in _closures_to_release:
                        registry.pop(name, None)
                    _closures_to_release.clear()


def reset_optimizer(model: tf_keras.Model) -> None:
    """Make ``model``'s compiled optimizer a fresh one again: step 0, zero moments (the learning rate
    is not among its variables), without compiling (and so tracing) anew."""
    for var in model.optimizer.variables:
        var.assign(np.zeros(var.shape, dtype=var.dtype.as_numpy_dtype))


def _weights_only_policy() -> Any:
    """A tfmot pruning policy that wraps only the layers with weights to prune.

    tfmot's default wraps every layer it knows, also those whose prunable-weight list is empty
    (BatchNormalization, ReLU, DepthwiseConv2D, pooling, Dropout): 69 of the 84 wrappers of
    mobilenet_v1 at 96x96. Each wrapper adds a conditional mask update to the training step, which
    TensorFlow must trace and run for nothing. Leaving those layers unwrapped prunes the same
    weights the same way, with a fraction of the tracing.
    """
    tfmot = _lazy.tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    class WeightsOnly(tfmot.sparsity.keras.PruningPolicy):  # type: ignore[misc,name-defined]
        def allow_pruning(self, layer: Any) -> bool:
            weights = PruneRegistry._LAYERS_WEIGHTS_MAP.get(type(layer))
            return weights is None or len(weights) > 0  # unknown layers: tfmot decides (and refuses)

        def ensure_model_supports_pruning(self, model: Any) -> None:
            return None

    return WeightsOnly()


def _signature(model: tf_keras.Model) -> list[tuple[str, list[tuple[int, ...]]]]:
    """Layer types and weight shapes, in order: what a pruning session's model must match."""
    return [(type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers]


T = TypeVar("T")


class _Recent(Generic[T]):
    """The last ``size`` values put, by key; a ``get`` makes its value the most recent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[Any, T] = {}

    def get(self, key: Any) -> T | None:
        value = self.items.pop(key, None)
        if value is not None:
            self.items[key] = value  # most recently used last
        return value

    def put(self, key: Any, value: T) -> None:
        self.items.pop(key, None)
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.pop(next(iter(self.items)))

    def drop(self, key: Any) -> None:
        self.items.pop(key, None)

    def clear(self) -> None:
        self.items.clear()


#: Reuse pruning sessions across candidates of one base (benchmarks switch it off to measure a fresh
#: wrapper per candidate, the pipeline before sessions).
REUSE_PRUNING_SESSIONS = True
#: Pruning sessions kept per process: four widths, the default space's.
PRUNING_SESSIONS_KEPT = 4
_PRUNING_SESSIONS: _Recent[_PruningSession] = _Recent(PRUNING_SESSIONS_KEPT)


#: Start a candidate from the pruned weights of an earlier candidate of the same base and sparsity
#: (benchmarks that time one candidate's full cost switch it off).
REUSE_PRUNED_WEIGHTS = True
#: (base, sparsity) pairs whose pruned weights are kept in memory per process.
PRUNED_WEIGHTS_KEPT = 12
#: (signature of the model as JSON, its pruned weights) by (base digest, training settings, data shape, sparsity).
_PRUNED_WEIGHTS: _Recent[tuple[str, list[np.ndarray]]] = _Recent(PRUNED_WEIGHTS_KEPT)
#: The folder, inside a base-model cache folder, that pruned weights are saved in (shared by workers).
PRUNED_FOLDER = "pruned"

#: Base models kept in memory per process: four widths, the default space's.
BASE_MODELS_KEPT = 4
#: (the cache file's SHA-256 when kept, the model) by the cache file's resolved path.
_BASE_MODELS: _Recent[tuple[str, tf_keras.Model]] = _Recent(BASE_MODELS_KEPT)
#: (base model, its work copy) by (id of the base model, thread): see :func:`work_copy`.
_WORK_COPIES: _Recent[tuple[tf_keras.Model, tf_keras.Model]] = _Recent(BASE_MODELS_KEPT)


def weights_digest(model: tf_keras.Model) -> str:
    """SHA-256 of a model's weights, in order: which base model a pruned copy started from."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(str((w.dtype, w.shape)).encode())
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PrunedKey:
    """What pruned weights are kept by: the base model's :func:`weights_digest`, the training settings,
    the training data's shape and the sparsity."""

    base: str
    settings: TrainSettings
    shape: tuple[int, ...]
    sparsity: float

    def file(self, cache_dir: Path) -> Path:
        """``<cache_dir>/pruned/<hash of the key>.npz``: where these pruned weights are saved."""
        text = json.dumps([self.base, asdict(self.settings), list(self.shape), self.sparsity], sort_keys=True)
        return cache_dir / PRUNED_FOLDER / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"


def pruned_key(base: str, settings: TrainSettings, shape: tuple[int, ...], sparsity: float) -> PrunedKey | None:
    """The key of a candidate's pruned weights; None for a dense candidate, or with reuse switched off."""
    if sparsity <= 0 or not REUSE_PRUNED_WEIGHTS:
        return None
    return PrunedKey(base, settings, tuple(int(d) for d in shape), round(float(sparsity), 6))


def _signature_text(model: tf_keras.Model) -> str:
    return json.dumps(_signature(model))


def _read_pruned(path: Path) -> tuple[str, list[np.ndarray]] | None:
    """The (signature, weights) saved at ``path`` by :func:`_save_pruned`, or None (a miss, with a
    warning when the file exists but does not match its recorded SHA-256 or does not read)."""
    if not path.exists() or not _digest_matches(path, "pruned weights", "pruned again"):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["arr_0"]), [data[f"arr_{i}"] for i in range(1, len(data.files))]
    except Exception as exc:  # a truncated or foreign file is pruned again, not fatal
        log.warning("pruned weights %s do not read (%s): pruned again", path, exc)
        return None


def _save_pruned(path: Path, signature: str, weights: list[np.ndarray]) -> None:
    """Save atomically, with the file's SHA-256 beside it, so concurrent workers never read half a file."""
    # arr_0: the signature, arr_1...: the weights
    _save_with_digest(path, lambda tmp: np.savez(tmp, np.array(signature), *weights))


def load_pruned(model: tf_keras.Model, key: PrunedKey | None, *, cache_dir: Path | None = None) -> bool:
    """Give ``model`` (a copy of the base model whose :func:`weights_digest` is ``key.base``) the weights
    an earlier candidate ended its pruning fine-tune of that same base at ``key.sparsity`` with (same
    settings, training data of the same shape), and recompile it. They come from this process's
    memory or, with ``cache_dir``, from a file another worker or an earlier run saved there. False
    (``model`` untouched) when there are none: the caller prunes it (:func:`prune`) and keeps the
    result with :func:`keep_pruned`.

    A second pruning would run the same schedule and fine-tune from the same weights; at most the
    data order of its fine-tune would differ.
    """
    if key is None or not REUSE_PRUNED_WEIGHTS:
        return False
    kept = _PRUNED_WEIGHTS.get(key)
    if kept is None and cache_dir is not None:
        kept = _read_pruned(key.file(cache_dir))
        if kept is not None:
            _PRUNED_WEIGHTS.put(key, kept)
    if kept is None or kept[0] != _signature_text(model):
        return False
    model.set_weights(kept[1])
    _compile(model, key.settings.learning_rate)
    return True


def keep_pruned(model: tf_keras.Model, key: PrunedKey | None, *, cache_dir: Path | None = None) -> None:
    """Keep the weights of a finished pruning fine-tune under ``key`` for :func:`load_pruned`: in
    memory, and with ``cache_dir`` also saved in ``<cache_dir>/pruned/`` for the study's other workers."""
    if key is None or not REUSE_PRUNED_WEIGHTS:
        return
    kept = (_signature_text(model), [np.array(w, copy=True) for w in model.get_weights()])
    _PRUNED_WEIGHTS.put(key, kept)
    if cache_dir is not None:
        path = key.file(cache_dir)
        if not path.exists():
            _save_pruned(path, *kept)


def quantize_aware(
    model: tf_keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    settings: TrainSettings,
    *,
    keep_sparsity: bool,
    callbacks: Sequence[Any] = (),
) -> tf_keras.Model:
    """Fine-tune with fake quantisation (tfmot QAT). With ``keep_sparsity`` the pruned zeros stay
    zero (tfmot's prune-preserving QAT scheme)."""
    tfmot = _lazy.tfmot()
    qk = tfmot.quantization.keras
    try:
        if keep_sparsity:
            annotated = qk.quantize_annotate_model(model)
            qat = qk.quantize_apply(annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        else:
            qat = qk.quantize_model(model)
    except Exception as exc:
        raise CandidateError(f"quantisation-aware training is not possible for this model: {exc}") from exc
    _compile(qat, settings.learning_rate / 4)
    _build_for_fit(qat, x_train, y_train)
    _fit(qat, x_train, y_train, settings, max(1, settings.finetune_epochs), callbacks)
    return qat


def clear_cache(cache_dir: Path) -> None:
    """Delete every cached base model (and forget the ones kept in memory, and their work copies)."""
    _BASE_MODELS.clear()
    _WORK_COPIES.clear()
    shutil.rmtree(cache_dir, ignore_errors=True)
