"""The candidate factory end to end on the demo data: real training, pruning, conversion, runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search import training
from search.candidate import check_deployable, evaluate_candidate, load_result, remeasure, supported_precisions
from search.errors import CandidateError, ConfigError
from search.flash import c_array_bytes
from search.result import CandidateResult, CandidateSpec
from search.targets import get_target

TINY = {"family": "mobilenet_v1", "width": 0.25, "epochs": 2, "finetune_epochs": 1, "seed": 0}


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    from search.data import load_demo

    return load_demo(seed=0)


def test_float16_is_refused_on_tflm_before_training() -> None:
    mcu = get_target("stm32l552")
    assert "float16" not in supported_precisions(mcu)
    assert "float16" in supported_precisions(get_target("raspberry-pi-4"))
    with pytest.raises(CandidateError, match="TFLite Micro has no float16 kernels"):
        check_deployable(CandidateSpec(precision="float16"), mcu)
    with pytest.raises(ConfigError, match="sparsity must be in"):
        check_deployable(CandidateSpec(sparsity=1.2), mcu)
    with pytest.raises(ConfigError, match="unknown model family 'resnet'"):
        check_deployable(CandidateSpec(family="resnet"), mcu)


@pytest.mark.slow
def test_int8_pruned_candidate_on_mcu(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = get_target("stm32l552")
    spec = CandidateSpec(sparsity=0.5, precision="int8", **TINY)  # type: ignore[arg-type]
    stages: list[str] = []
    result = evaluate_candidate(
        spec, target, demo, tmp_path / "c1", cache_dir=tmp_path / "cache", progress=stages.append
    )
    assert stages == ["train", "prune", "convert", "measure"]
    f = result.figures
    # the deployed artifact ran in TFLite Micro: accuracy well above chance (10 classes) and close to Keras
    assert f["accuracy"].kind == "measured" and "TFLite Micro" in f["accuracy"].method
    assert f["accuracy"].value > 0.5
    assert abs(f["accuracy"].value - f["keras_accuracy"].value) < 0.05
    assert f["latency_ms"].kind == "estimated" and f["latency_ms"].error_pct is not None
    assert f["arena_bytes"].kind == "measured" and f["arena_bytes"].value > 0
    model = (tmp_path / "c1" / "model.tflite").read_bytes()
    # the C array's size (the .tflite padded to 16 bytes), in kB rounded to 0.01
    assert f["model_flash_kb"].value == pytest.approx(c_array_bytes(len(model)) / 1024, abs=0.005)
    assert c_array_bytes(len(model)) >= len(model)
    # pruning reached its target and the truth about flash is told
    assert result.sparsity["pruned_layers_zero_fraction"] == pytest.approx(0.5, abs=0.02)
    assert 0.3 < result.sparsity["zero_weight_fraction"] < 0.5  # depthwise kernels stay dense
    assert result.sparsity["flash_saved_bytes"] == 0
    assert result.sparsity["gzip_bytes"] < result.sparsity["stored_bytes"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(result.ops)
    assert result.macs > 0 and result.params > 0
    # everything is written and round-trips through JSON
    stored = json.loads((tmp_path / "c1" / "result.json").read_text())
    assert CandidateResult.from_dict(stored).to_dict() == result.to_dict()
    samples = np.load(tmp_path / "c1" / "val_samples.npz")
    assert samples["x"].shape == (32, 8, 8, 1) and samples["y"].shape == (32,)
    assert result.constraint_values()[0] == pytest.approx(f["flash_kb"].value - target.flash_budget_kb)

    # the same base model is reused for another precision
    spec2 = CandidateSpec(sparsity=0.0, precision="int16x8", **TINY)  # type: ignore[arg-type]
    result2 = evaluate_candidate(spec2, target, demo, tmp_path / "c2", cache_dir=tmp_path / "cache")
    assert result2.reused_base and not result.reused_base
    assert result2.stage_seconds["train"] < result.stage_seconds["train"]

    # the same width and sparsity at another precision starts from c1's pruned weights: no second pruning,
    # also in another worker (this process's kept weights forgotten: they come from the cache folder)
    training._PRUNED_WEIGHTS.clear()
    spec3 = CandidateSpec(sparsity=0.5, precision="int16x8", **TINY)  # type: ignore[arg-type]
    result3 = evaluate_candidate(spec3, target, demo, tmp_path / "c3", cache_dir=tmp_path / "cache")
    assert result3.reused_pruning and not result.reused_pruning and not result2.reused_pruning
    assert result3.stage_seconds["prune"] < result.stage_seconds["prune"] / 2
    assert result3.sparsity["pruned_layers_zero_fraction"] == result.sparsity["pruned_layers_zero_fraction"]
    assert result3.figures["keras_accuracy"].value == result.figures["keras_accuracy"].value
    assert CandidateResult.from_dict(result3.to_dict()).reused_pruning

    # re-check on another board: same artifact, other clock and budgets
    other = remeasure(tmp_path / "c1", get_target("ek-ra8d1"))
    assert other.figures["accuracy"] == f["accuracy"]
    assert other.figures["arena_bytes"].value == f["arena_bytes"].value
    assert other.figures["latency_ms"].value < f["latency_ms"].value
    assert load_result(tmp_path / "c1").spec == spec


@pytest.mark.slow
def test_onnx_candidate_on_linux_board(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = get_target("raspberry-pi-4")
    spec = CandidateSpec(precision="int8", **TINY)  # type: ignore[arg-type]
    result = evaluate_candidate(spec, target, demo, tmp_path / "pi", cache_dir=tmp_path / "cache")
    f = result.figures
    assert (tmp_path / "pi" / "model.onnx").exists()
    assert f["accuracy"].value > 0.5 and "ONNX Runtime" in f["accuracy"].method
    assert f["host_latency_ms"].kind == "measured" and f["host_latency_ms"].value <= f["host_latency_p99_ms"].value
    assert f["latency_ms"].kind == "estimated"
    assert f["latency_ms"].value == pytest.approx(f["host_latency_ms"].value * 5.0)
    assert f["sram_kb"].kind == "measured" and f["sram_kb"].value > 0
    assert "QuantizeLinear" in result.ops


def test_a_dense_candidate_converts_the_kept_base_and_leaves_it_as_it_was(  # type: ignore[no-untyped-def]
    demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dense candidates convert the base model kept in memory, not a copy: pruned and quantisation-aware
    candidates of the same width in between change nothing of it, and the same dense candidate gives
    the same model, bit for bit; so does the same pruned candidate, pruned again in the reused work copy."""
    target = get_target("stm32l552")
    cache = tmp_path / "cache"
    training.clear_cache(cache)

    def build(name: str, **spec: object) -> bytes:
        evaluate_candidate(
            CandidateSpec(**{**TINY, "epochs": 1, **spec}), target, demo, tmp_path / name, cache_dir=cache
        )  # type: ignore[arg-type]
        return (tmp_path / name / "model.tflite").read_bytes()

    first = build("dense", sparsity=0.0, precision="int8")
    ((_, base),) = training._BASE_MODELS.items.values()
    digest = training.weights_digest(base)
    pruned = build("pruned", sparsity=0.5, precision="int8")
    build("qat", sparsity=0.0, precision="int8_qat")
    build("float", sparsity=0.0, precision="float32")
    ((_, kept),) = training._BASE_MODELS.items.values()
    assert kept is base and training.weights_digest(base) == digest
    assert build("dense-again", sparsity=0.0, precision="int8") == first
    # the work copy the pruned and QAT candidates shared starts again from the base's weights: the
    # same pruned candidate, pruned again rather than served from its kept pruned weights, is the same model
    monkeypatch.setattr(training, "REUSE_PRUNED_WEIGHTS", False)
    assert build("pruned-again", sparsity=0.5, precision="int8") == pruned
    training.clear_cache(cache)
