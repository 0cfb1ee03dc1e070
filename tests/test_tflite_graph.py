"""parse_tflite on the MLPerf Tiny models: MACs, parameters, ops, zeros, errors, no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from search.errors import MeasurementError
from search.tflite_graph import parse_tflite, resolver_method_name

# (file, MACs and params from ../shared/calibration/mcu_latency.csv)
PUBLISHED = [
    ("kws_ref_model.tflite", 2_660_000, 22_600),
    ("vww_96_int8.tflite", 7_490_000, 210_900),
    ("pretrainedResnet_quant.tflite", 12_500_000, 77_700),
    ("ad01_int8.tflite", 264_000, 265_900),
]


@pytest.mark.parametrize(("name", "macs", "params"), PUBLISHED)
def test_mac_and_param_totals_match_published(mlperf_dir: Path, name: str, macs: int, params: int) -> None:
    g = parse_tflite((mlperf_dir / name).read_bytes())
    assert g.macs == pytest.approx(macs, rel=0.005)
    assert g.params == pytest.approx(params, rel=0.005)
    assert g.macs == sum(layer.macs for layer in g.layers)


def test_kws_layers_ops_and_io(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    g = parse_tflite(data)
    assert g.macs == 2_656_768
    assert g.ops == ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
    assert len(g.layers) == 13
    first = g.layers[0]
    # 10x4 conv, stride 2, 64 filters on 49x10x1 -> 25x5x64: 8,000 outputs x 40 MACs.
    assert (first.op, first.output_shape, first.macs) == ("CONV_2D", (1, 25, 5, 64), 320_000)
    assert first.weight_params == 64 * 10 * 4 + 64
    (inp,) = g.inputs
    assert (inp.shape, inp.dtype, inp.zero_point) == ((1, 49, 10, 1), "int8", 83)
    assert inp.scale == pytest.approx(0.5847029, rel=1e-6)
    assert g.outputs[0].shape == (1, 12) and g.outputs[0].dtype == "int8"
    assert g.model_bytes == len(data) == 53_936
    assert g.weight_bytes == 24_376
    assert g.to_dict()["layers"][0]["macs"] == 320_000


def test_float_and_int8_graphs_agree_on_macs_not_bytes(mlperf_dir: Path) -> None:
    f32 = parse_tflite((mlperf_dir / "vww_96_float.tflite").read_bytes())
    i8 = parse_tflite((mlperf_dir / "vww_96_int8.tflite").read_bytes())
    assert f32.macs == i8.macs == 7_489_664
    assert f32.inputs[0].dtype == "float32" and f32.inputs[0].scale is None
    assert f32.weight_bytes / i8.weight_bytes == pytest.approx(3.85, abs=0.05)  # int32 biases stay 4 B
    # The published int8 VWW model really has many exact zeros (one 256x256 1x1 conv is 99% zeros).
    assert i8.zero_weight_fraction == pytest.approx(0.8277, abs=0.001)
    assert f32.zero_weight_fraction == 0.0


def test_resolver_method_names(mlperf_dir: Path) -> None:
    assert resolver_method_name("CONV_2D") == "AddConv2D"
    assert resolver_method_name("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method_name("FULLY_CONNECTED") == "AddFullyConnected"
    assert resolver_method_name("AVERAGE_POOL_2D") == "AddAveragePool2D"
    assert resolver_method_name("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"
    with pytest.raises(MeasurementError, match="RFFT2D"):
        resolver_method_name("RFFT2D")
    for f in mlperf_dir.glob("*.tflite"):
        for op in parse_tflite(f.read_bytes()).ops:
            assert resolver_method_name(op).startswith("Add")


def test_garbage_and_truncated_bytes_raise(mlperf_dir: Path) -> None:
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        parse_tflite(b"definitely not a model" * 4)
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        parse_tflite(b"")
    head = (mlperf_dir / "kws_ref_model.tflite").read_bytes()[:200]
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        parse_tflite(head)


def test_parsing_does_not_import_tensorflow(mlperf_dir: Path) -> None:
    code = (
        "import sys; from search.tflite_graph import parse_tflite; "
        f"parse_tflite(open({str(mlperf_dir / 'kws_ref_model.tflite')!r}, 'rb').read()); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- validation of every index the reader and TFLM follow (issue 10 item 2) -----------------------


def _mutated(path: Path, edit: Callable[[Any], None]) -> bytes:
    """The model at ``path`` decoded into the schema's object API, edited by ``edit`` and packed again."""
    import flatbuffers

    from search.tflite_graph import _schema

    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    edit(m)
    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _conv0(m: Any) -> Any:
    return m.subgraphs[0].operators[0]


def _set_input(op: Any, position: int, value: int) -> None:
    inputs = list(op.inputs)
    inputs[position] = value
    op.inputs = inputs


def _set_shape(m: Any, tensor: int, shape: list[int]) -> None:
    m.subgraphs[0].tensors[tensor].shape = shape


MUTATIONS: list[tuple[str, Callable[[Any], None], str]] = [
    (
        "opcode",
        lambda m: setattr(_conv0(m), "opcodeIndex", 99),
        r"operator 0 opcode index is 99, out of range \(allowed: 0\.\.5\)",
    ),
    ("tensor", lambda m: _set_input(_conv0(m), 0, 999), r"operator 0 inputs\[0\] tensor index is 999, out of range"),
    ("negative tensor", lambda m: _set_input(_conv0(m), 0, -7), r"inputs\[0\] tensor index is -7, out of range"),
    (
        "subgraph input",
        lambda m: setattr(m.subgraphs[0], "inputs", [999]),
        r"subgraph 0 inputs\[0\] tensor index is 999",
    ),
    (
        "subgraph output",
        lambda m: setattr(m.subgraphs[0], "outputs", [-1]),
        r"subgraph 0 outputs\[0\] tensor index is -1",
    ),
    (
        "buffer",
        lambda m: setattr(m.subgraphs[0].tensors[17], "buffer", 9999),
        r"tensor 17 buffer index is 9999, out of range \(allowed: 0\.\.36\)",
    ),
    (
        "1-D filter",
        lambda m: _set_shape(m, 17, [640]),
        r"CONV_2D\) needs a 4-D weight tensor, found tensor 17 of shape \[640\]",
    ),
    (
        "short buffer",
        lambda m: _set_shape(m, 17, [64, 10, 4, 2]),
        r"tensor 17 shape \[64, 10, 4, 2\] needs 5,120 B of data, buffer 18 holds 2,560 B",
    ),
    (
        "negative dim",
        lambda m: _set_shape(m, 0, [1, -49, 10, 1]),
        r"tensor 0 shape \[1, -49, 10, 1\] has a negative dimension",
    ),
    ("huge tensor", lambda m: _set_shape(m, 0, [1, 2**20, 2**20, 1]), r"needs 1,099,511,627,776 B, more than"),
    ("missing filter", lambda m: _set_input(_conv0(m), 1, -1), r"\(CONV_2D\) needs 2 inputs and an output"),
    ("metadata", lambda m: setattr(m.metadata[0], "buffer", 500), r"metadata 0 buffer index is 500"),
]


@pytest.mark.parametrize(("what", "edit", "message"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_out_of_range_fields_are_named(mlperf_dir: Path, what: str, edit: Callable[[Any], None], message: str) -> None:
    path = mlperf_dir / "kws_ref_model.tflite"
    assert parse_tflite(_mutated(path, lambda m: None)).macs == 2_656_768  # the round trip itself is harmless
    with pytest.raises(MeasurementError, match=r"^invalid \.tflite: .*" + message):
        parse_tflite(_mutated(path, edit))


def test_buffer_index_is_rejected_before_tflm_sees_it(mlperf_dir: Path) -> None:
    # This one used to SIGSEGV inside the interpreter: now the parent refuses it, no child is started.
    from search.tflm import measure_arena, run_tflm

    bad = _mutated(mlperf_dir / "kws_ref_model.tflite", MUTATIONS[5][1])
    with pytest.raises(MeasurementError, match="buffer index is 9999"):
        measure_arena(bad)
    with pytest.raises(MeasurementError, match="buffer index is 9999"):
        run_tflm(bad, np.zeros((1, 49, 10, 1), np.float32))


def test_buffer_offset_past_the_end(mlperf_dir: Path) -> None:
    def edit(m: Any) -> None:
        buf = m.buffers[m.subgraphs[0].tensors[17].buffer]
        buf.data, buf.offset, buf.size = None, 10**9, 2560

    with pytest.raises(MeasurementError, match=r"buffer 18 \(of subgraph 0 tensor 17\) spans bytes 1000000000\.\."):
        parse_tflite(_mutated(mlperf_dir / "kws_ref_model.tflite", edit))
