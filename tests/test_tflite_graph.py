"""parse_tflite on the MLPerf Tiny models: MACs, parameters, ops, zeros, errors, no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
