"""Model families the search builds: MLPerf Tiny's MobileNetV1 (VWW) and DS-CNN (KWS), or a user builder.

Both built-in families use only layers that convert to full-integer int8 TFLite and run on TFLite
Micro: Conv2D / DepthwiseConv2D (batch norm folded in by the converter) -> CONV_2D /
DEPTHWISE_CONV_2D, ReLU (fused), AveragePooling2D over the whole final feature map ->
AVERAGE_POOL_2D, Flatten -> RESHAPE, Dense -> FULLY_CONNECTED, softmax -> SOFTMAX. A full-map
AveragePooling2D is used instead of GlobalAveragePooling2D (which becomes MEAN) because it is
what the MLPerf Tiny reference models use and TFLM's CMSIS-NN port has an optimised int8
average-pool kernel. The same layers work with tfmot pruning and quantisation-aware training.

Filter counts are ``max(8, round(f * width / 8) * 8)``: multiples of 8 suit CMSIS-NN kernels.
For small inputs a stride-2 layer becomes stride 1 once its output would drop below 2x2 (the demo's
8x8 digits end in a 2x2 map); filter counts are kept. Batch norm uses momentum :data:`BN_MOMENTUM`.
TensorFlow / tf_keras are imported inside the functions, never at module import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search._lazy import keras
from search.errors import ConfigError

if TYPE_CHECKING:
    import tf_keras

FAMILIES: tuple[str, ...] = ("mobilenet_v1", "ds_cnn")

#: MobileNetV1's depthwise-separable blocks: (pointwise filters at width 1.0, stride).
MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
#: DS-CNN (MLPerf Tiny KWS): 64 filters everywhere, 4 depthwise-separable blocks.
DS_CNN_FILTERS = 64
DS_CNN_BLOCKS = 4
MAX_WIDTH = 2.0
#: Batch-norm moving-average momentum. Keras' 0.99 leaves the moving statistics far from the batch
#: statistics after the few hundred steps a candidate trains for, and inference-mode accuracy
#: collapses to chance on the demo; 0.9 tracks them within a few dozen steps.
BN_MOMENTUM = 0.9

_DESCRIPTIONS = {
    "mobilenet_v1": (
        "MobileNetV1 (MLPerf Tiny VWW): 3x3/2 conv + 13 depthwise-separable blocks of 64-1024 filters x width"
    ),
    "ds_cnn": "DS-CNN (MLPerf Tiny KWS): 10x4/2 conv + 4 depthwise-separable blocks of 64 filters x width",
}


def scaled_filters(filters: int, width: float) -> int:
    """``filters * width`` rounded to a multiple of 8, at least 8."""
    return max(8, int(round(filters * width / 8)) * 8)


def describe_family(family: str) -> str:
    """One line describing ``family`` (a built-in name or a ``package.module:function`` builder)."""
    if family in _DESCRIPTIONS:
        return _DESCRIPTIONS[family]
    if ":" in family:
        return f"user builder {family}(input_shape, num_classes, width) -> tf_keras.Model"
    raise _unknown(family)


def build_model(
    family: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: float,
    *,
    seed: int = 0,
    depth: int | None = None,
) -> tf_keras.Model:
    """Build an uncompiled tf_keras model of ``family`` at ``width``, with initialisers seeded by ``seed``.

    ``depth`` (built-in families only) keeps the first ``depth`` depthwise-separable blocks: 1..13 for
    mobilenet_v1, 1..4 for ds_cnn (default 4). mobilenet_v1's default follows the input: the stack
    stops before the first stride-2 block that the input is too small for (see
    :func:`mobilenet_v1_default_depth`), so 96x96 keeps all 13 blocks and the 8x8 demo keeps 3.
    A user builder is ``package.module:function``
    called as ``function(input_shape, num_classes, width)``; it must return a tf_keras (Keras 2) model
    whose output shape is ``(None, num_classes)``.
    """
    if not 0.0 < width <= MAX_WIDTH:
        raise ConfigError(f"width must be in (0, {MAX_WIDTH:g}], got {width}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(f"input_shape must be (height, width, channels) >= 1, got {input_shape}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    k = keras()
    k.utils.set_random_seed(seed)
    builders: dict[str, Callable[..., Any]] = {"mobilenet_v1": _mobilenet_v1, "ds_cnn": _ds_cnn}
    if family in builders:
        model = builders[family](tuple(input_shape), num_classes, width, depth)
    elif ":" in family:
        if depth is not None:
            raise ConfigError(f"depth applies to the built-in families {', '.join(FAMILIES)}, not to {family}")
        model = _load_builder(family)(tuple(input_shape), num_classes, width)
    else:
        raise _unknown(family)
    _check_model(model, family, input_shape, num_classes)
    return model


def _unknown(family: str) -> ConfigError:
    return ConfigError(f"family must be one of {', '.join(FAMILIES)} or 'package.module:function', got {family!r}")


def _load_builder(spec: str) -> Callable[..., Any]:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"a user builder is 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of builder {spec!r}: {exc!r}") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise ConfigError(f"module {module_name!r} has no function {func_name!r} (builder {spec!r})")
    if not callable(func):
        raise ConfigError(f"builder {spec!r} must be a function, found {type(func).__name__}")
    return func  # type: ignore[no-any-return]


def _check_model(model: object, family: str, input_shape: tuple[int, int, int], num_classes: int) -> None:
    k = keras()
    if not isinstance(model, k.Model):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        hint = (
            " (a Keras 3 model: build it with tf_keras, the Keras 2 that tfmot needs)"
            if kind.startswith("keras")
            else ""
        )
        raise ConfigError(f"builder {family!r} must return a tf_keras.Model, returned {kind}{hint}")
    out = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if out != (None, num_classes):
        raise ConfigError(f"model {family!r} must output shape (None, {num_classes}), found {model.output_shape}")
    inp = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if inp != (None, *input_shape):
        raise ConfigError(f"model {family!r} must take input (None, {', '.join(map(str, input_shape))}), found {inp}")


def _depth(depth: int | None, maximum: int, family: str) -> int:
    if depth is None:
        return maximum
    if not 1 <= depth <= maximum:
        raise ConfigError(f"depth of {family} must be in 1..{maximum}, got {depth}")
    return depth


def _conv_bn_relu(x: Any, layer: Any) -> Any:
    k = keras()
    x = layer(x)
    x = k.layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return k.layers.ReLU()(x)


def _ds_block(x: Any, filters: int, stride: int) -> Any:
    """DepthwiseConv2D 3x3 + BN + ReLU, then Conv2D 1x1 + BN + ReLU."""
    k = keras()
    x = _conv_bn_relu(x, k.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False))
    return _conv_bn_relu(x, k.layers.Conv2D(filters, 1, padding="same", use_bias=False))


def _stride(size: tuple[int, int], stride: int) -> int:
    """Keep stride 2 only while the 'same'-padded output stays at least 2x2."""
    return stride if stride == 1 or min((s + 1) // 2 for s in size) >= 2 else 1


def _head(x: Any, num_classes: int, name: str) -> Any:
    """AveragePooling2D over the whole map (AVERAGE_POOL_2D) + Flatten + Dense softmax."""
    k = keras()
    x = k.layers.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    x = k.layers.Flatten()(x)
    return k.layers.Dense(num_classes, activation="softmax", name=f"{name}_logits")(x)


def mobilenet_v1_default_depth(input_shape: tuple[int, ...]) -> int:
    """Blocks of MobileNetV1 an input of this size supports: all 13 unless a stride-2 block would have
    to run at stride 1 (its map already at 2x2); the stack then ends before that block, since more
    wide blocks on a 2x2 map add parameters and training time, not resolution."""
    size: tuple[int, int] = (int(input_shape[0]), int(input_shape[1]))
    stride = _stride(size, 2)
    size = (-(-size[0] // stride), -(-size[1] // stride))
    for index, (_, block_stride) in enumerate(MOBILENET_V1_BLOCKS):
        stride = _stride(size, block_stride)
        if stride != block_stride:
            return max(1, index)
        size = (-(-size[0] // stride), -(-size[1] // stride))
    return len(MOBILENET_V1_BLOCKS)


def _mobilenet_v1(input_shape: tuple[int, int, int], num_classes: int, width: float, depth: int | None) -> Any:
    k = keras()
    if depth is None:
        depth = mobilenet_v1_default_depth(input_shape)
    n_blocks = _depth(depth, len(MOBILENET_V1_BLOCKS), "mobilenet_v1")
    inputs = k.Input(shape=input_shape)
    size = input_shape[:2]
    stride = _stride(size, 2)
    x = _conv_bn_relu(
        inputs, k.layers.Conv2D(scaled_filters(32, width), 3, strides=stride, padding="same", use_bias=False)
    )
    size = (-(-size[0] // stride), -(-size[1] // stride))
    for filters, block_stride in MOBILENET_V1_BLOCKS[:n_blocks]:
        stride = _stride(size, block_stride)
        x = _ds_block(x, scaled_filters(filters, width), stride)
        size = (-(-size[0] // stride), -(-size[1] // stride))
    return k.Model(inputs, _head(x, num_classes, "mobilenet_v1"), name=f"mobilenet_v1_w{width:g}")


def _ds_cnn(input_shape: tuple[int, int, int], num_classes: int, width: float, depth: int | None) -> Any:
    k = keras()
    n_blocks = _depth(depth, DS_CNN_BLOCKS, "ds_cnn")
    filters = scaled_filters(DS_CNN_FILTERS, width)
    kernel = (min(10, input_shape[0]), min(4, input_shape[1]))
    stride = _stride(input_shape[:2], 2)
    inputs = k.Input(shape=input_shape)
    x = _conv_bn_relu(inputs, k.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False))
    x = k.layers.Dropout(0.2)(x)
    for _ in range(n_blocks):
        x = _ds_block(x, filters, 1)
    x = k.layers.Dropout(0.4)(x)
    return k.Model(inputs, _head(x, num_classes, "ds_cnn"), name=f"ds_cnn_w{width:g}")
