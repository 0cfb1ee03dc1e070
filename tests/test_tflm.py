"""The real TFLite Micro interpreter: arena bisection against the published minima, inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.errors import MeasurementError
from search.tflm import measure_arena, quantize_input, run_tflm, run_tflm_raw


def _check_arena(path: Path, published: int, head: int) -> None:
    a = measure_arena(path.read_bytes())
    assert a.arena_bytes == pytest.approx(published, rel=0.01)
    assert a.breakdown["head"] == head
    assert a.breakdown["total"] == a.breakdown["head"] + a.breakdown["tail"]
    # A 32-bit MCU saves the pointer halves of the persistent records: a few %, never more than the tail.
    assert a.arena_bytes - a.breakdown["tail"] < a.arena_bytes_32bit < a.arena_bytes
    assert a.arena_bytes_32bit > 0.9 * a.arena_bytes
    assert a.to_dict()["arena_bytes"] == a.arena_bytes


def test_kws_and_ic_arena_match_published_minimum(mlperf_dir: Path) -> None:
    _check_arena(mlperf_dir / "kws_ref_model.tflite", 24_282, 16_000)
    _check_arena(mlperf_dir / "pretrainedResnet_quant.tflite", 55_986, 49_152)


@pytest.mark.slow
def test_vww_and_person_detect_arena_match_published_minimum(mlperf_dir: Path) -> None:
    _check_arena(mlperf_dir / "vww_96_int8.tflite", 103_686, 73_728)
    _check_arena(mlperf_dir / "person_detect.tflite", 85_275, 55_296)


def test_tiny_model_arena_includes_planner_scratch(mlperf_dir: Path) -> None:
    # AD01's activations need only 768 B, but the memory planner's temporary buffers (freed after
    # planning) must fit too: the smallest arena that really allocates exceeds the recorded total
    # (3,984 B, which the shared README quotes as 3,983 B).
    a = measure_arena((mlperf_dir / "ad01_int8.tflite").read_bytes())
    assert a.breakdown["total"] == 3_984 and a.breakdown["head"] == 768
    assert 3_984 < a.arena_bytes <= 4_700
    kb = measure_arena((mlperf_dir / "ad01_int8.tflite").read_bytes(), resolution=256)
    assert a.arena_bytes <= kb.arena_bytes < a.arena_bytes + 256


def test_measure_arena_rejects_garbage() -> None:
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        measure_arena(b"\x00" * 64)


def test_run_tflm_float_and_raw_paths_agree(mlperf_dir: Path) -> None:
    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    x = np.random.default_rng(0).normal(0.0, 20.0, size=(4, 49, 10, 1)).astype(np.float32)
    y = run_tflm(model, x)
    assert y.shape == (4, 12) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=0.02)  # softmax output, 1/256 steps
    assert np.array_equal(y, run_tflm(model, x, arena_size=30_000))  # deterministic
    raw = run_tflm_raw(model, quantize_input(model, x[1:2]))
    assert raw.dtype == np.int8 and raw.shape == (1, 12)
    np.testing.assert_array_equal((raw.astype(np.float32) + 128) * 0.00390625, y[1:2])


def test_quantize_input_uses_scale_and_zero_point(mlperf_dir: Path) -> None:
    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()  # scale 0.5847029, zero point 83
    q = quantize_input(model, np.array([0.0, 0.5847029 * 10, 1e6, -1e6], dtype=np.float32))
    assert q.dtype == np.int8
    assert q.tolist() == [83, 93, 127, -128]


def test_run_tflm_errors(mlperf_dir: Path) -> None:
    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    with pytest.raises(MeasurementError, match="cannot allocate"):
        run_tflm(model, np.zeros((1, 49, 10, 1), np.float32), arena_size=1_000)
    with pytest.raises(MeasurementError, match="input shape mismatch"):
        run_tflm(model, np.zeros((1, 10, 49, 1), np.float32))


@pytest.mark.slow
def test_tflm_matches_tflite_interpreter(mlperf_dir: Path) -> None:
    from search._lazy import tensorflow

    tf = tensorflow()
    model = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    x = np.random.default_rng(1).uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    interp = tf.lite.Interpreter(model_content=model)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    for sample in quantize_input(model, x):
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        expected = interp.get_tensor(out["index"]).astype(np.int32)
        got = run_tflm_raw(model, sample[None]).astype(np.int32)
        assert np.abs(got - expected).max() <= 1  # int8 outputs, at most one step apart


# --- the process wall (issue 10 item 1) ------------------------------------------------------------


def test_crashing_child_becomes_measurement_error(mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.tflm as tflm

    model = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    monkeypatch.setattr(tflm, "_TEST_FAULT", "SIGSEGV")
    with pytest.raises(MeasurementError, match=r"TFLite Micro crashed \(SIGSEGV\) while .*measuring the tensor arena"):
        measure_arena(model)
    with pytest.raises(MeasurementError, match=r"crashed \(SIGSEGV\) .*running 2 sample\(s\)"):
        run_tflm(model, np.zeros((2, 640), np.float32))
    monkeypatch.setattr(tflm, "_TEST_FAULT", None)
    assert 3_984 < measure_arena(model).arena_bytes <= 4_700  # this process is still fine


def test_probe_that_crashes_counts_as_too_small(mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.tflm as tflm

    model = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    clean = measure_arena(model)
    monkeypatch.setattr(tflm, "_TEST_FAULT", "SIGSEGV-first-probe")  # dies probing the recorded total
    crashed = measure_arena(model)
    # The first probe (the recorded total, 3,984 B) is too small anyway: same answer after one restart.
    assert crashed == clean


def test_hanging_child_times_out(mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.tflm as tflm

    monkeypatch.setattr(tflm, "_TEST_FAULT", "hang")
    monkeypatch.setattr(tflm, "CHILD_TIMEOUT_S", 3.0)
    monkeypatch.setattr(tflm, "PER_SAMPLE_TIMEOUT_S", 0.0)
    with pytest.raises(MeasurementError, match=r"timed out after 3 s while starting .*child killed"):
        run_tflm_raw((mlperf_dir / "ad01_int8.tflite").read_bytes(), np.zeros((1, 640), np.int8))


@pytest.mark.slow
def test_search_that_used_to_segfault_completes(tmp_path: Path) -> None:
    """Issue 10 item 1: this search exited 139 (a probe at the recorded total crashed TFLM)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "explorer.cli", "search", "--target", "stm32l552", "--trials", "1",
           "--epochs", "2", "--finetune-epochs", "1", "--width-min", "0.5", "--width-max", "0.5",
           "--sparsity-min", "0.2", "--sparsity-max", "0.2", "--precisions", "int8_qat"]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    front = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "front", "--study", "stm32l552-mobilenet_v1", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    (trial,) = json.loads(front.stdout)["trials"]
    assert trial["state"] in ("COMPLETE", "FAIL")
    if trial["state"] == "FAIL":
        assert trial["fail_reason"]
    else:
        assert 0.5 <= trial["values"]["accuracy"] <= 1.0


# --- the kept interpreter child ------------------------------------------------------------------


def test_one_child_serves_requests_in_turn_and_a_crashed_one_is_replaced(
    mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.tflm as tflm

    model = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    first = measure_arena(model)
    child = tflm._slot(0).child
    assert child is not None
    pid = child.proc.pid
    assert measure_arena(model) == first
    assert run_tflm(model, np.zeros((3, 640), np.float32)).shape == (3, 640)
    assert tflm._slot(0).child is child and child.proc.poll() is None  # the same process served all three
    monkeypatch.setattr(tflm, "_TEST_FAULT", "SIGSEGV")
    with pytest.raises(MeasurementError, match=r"crashed \(SIGSEGV\)"):
        run_tflm(model, np.zeros((1, 640), np.float32))
    assert tflm._slot(0).child is None and child.proc.returncode == -11 and child.stderr.closed
    monkeypatch.setattr(tflm, "_TEST_FAULT", None)
    assert measure_arena(model) == first
    assert tflm._slot(0).child is not None and tflm._slot(0).child.proc.pid != pid


def test_a_child_is_replaced_after_its_share_of_requests(mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.tflm as tflm

    monkeypatch.setattr(tflm, "CHILD_REQUESTS", 2)
    model = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    tflm._close_children()
    x = np.linspace(-1, 1, 2 * 640, dtype=np.float32).reshape(2, 640)
    expected = run_tflm(model, x)
    old = tflm._slot(0).child
    assert old is not None and old.served == 1
    assert np.array_equal(run_tflm(model, x), expected)
    assert tflm._slot(0).child is None and old.proc.returncode == 0  # ended at the end of its input, not killed
    assert np.array_equal(run_tflm(model, x), expected)
    assert tflm._slot(0).child is not None and tflm._slot(0).child is not old


def test_the_child_ends_with_its_parent(mlperf_dir: Path, tmp_path: Path) -> None:
    """A process that measured and then exits (normally, or killed) leaves no interpreter child behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    script = (
        f"import sys, os, signal; sys.path.insert(0, {str(root)!r})\n"
        "from search import tflm\n"
        f"tflm.measure_arena(open({str(mlperf_dir / 'ad01_int8.tflite')!r}, 'rb').read())\n"
        "print(tflm._slot(0).child.proc.pid, flush=True)\n"
        "if sys.argv[1] == 'kill': os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    for how in ("exit", "kill"):
        done = subprocess.run([sys.executable, "-c", script, how], capture_output=True, text=True, timeout=120)
        assert done.returncode == (0 if how == "exit" else -signal.SIGKILL), done.stderr[-2000:]
        pid = int(done.stdout.split()[0])
        for _ in range(100):  # killed: the child sees the end of its input and exits by itself
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
            if status == "Z":  # exited; only waiting to be reaped by its new parent
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"interpreter child {pid} still running after its parent ended ({how})")


def test_a_large_batch_is_split_over_the_cores_with_the_same_outputs(
    mlperf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.tflm as tflm

    model = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    x = np.random.default_rng(3).normal(size=(2 * tflm.MIN_SAMPLES_PER_CHILD + 5, 640)).astype(np.float32)
    monkeypatch.setenv("TINYFRONT_THREADS", "1")  # one search worker of two on two cores: one child
    tflm._close_children()
    alone = run_tflm(model, x)
    assert tflm._slot(0).child is not None and (len(tflm._slots) == 1 or tflm._slot(1).child is None)
    monkeypatch.setenv("TINYFRONT_THREADS", "2")
    split = run_tflm(model, x)
    assert tflm._slot(1).child is not None and tflm._slot(1).child.served == 1  # the second half ran there
    np.testing.assert_array_equal(split, alone)
    assert run_tflm(model, x[:100]).shape == (100, 640)  # under 2 x 64 samples: one child
    assert tflm._slot(1).child.served == 1
    monkeypatch.setattr(tflm, "_TEST_FAULT", "SIGSEGV")
    with pytest.raises(MeasurementError, match=r"crashed \(SIGSEGV\) .*running 133 sample\(s\)"):
        run_tflm(model, x)
    assert tflm._slot(0).child is None and tflm._slot(1).child is None
    monkeypatch.setattr(tflm, "_TEST_FAULT", None)
    np.testing.assert_array_equal(run_tflm(model, x), alone)


def test_the_batch_split_reads_tinyfront_threads_as_tensorflow_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from search.errors import TinyfrontError
    from search.tflm import batch_children

    monkeypatch.delenv("TINYFRONT_THREADS", raising=False)
    assert batch_children() == (os.cpu_count() or 1)
    monkeypatch.setenv("TINYFRONT_THREADS", " 3 ")
    assert batch_children() == 3
    monkeypatch.setenv("TINYFRONT_THREADS", "two")
    with pytest.raises(TinyfrontError, match="TINYFRONT_THREADS must be a whole number of threads >= 1, got 'two'"):
        batch_children()
