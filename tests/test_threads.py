"""Each worker's TensorFlow thread pools are capped to its share of the cores (TINYFRONT_THREADS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from search.workers import worker_threads

_PROBE = (
    "from search._lazy import tensorflow; tf = tensorflow(); "
    "t = tf.config.threading; "
    "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())"
)


def _probe(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TINYFRONT_THREADS"}
    if value is not None:
        env["TINYFRONT_THREADS"] = value
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)


def test_worker_threads_share_the_cores() -> None:
    cores = os.cpu_count() or 1
    assert worker_threads(1) == cores
    assert worker_threads(cores) == 1
    assert worker_threads(cores * 4) == 1


@pytest.mark.slow
def test_thread_limit_reaches_tensorflow() -> None:
    done = _probe("1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "1"]
    unset = _probe(None)
    assert unset.returncode == 0 and unset.stdout.split() == ["0", "0"]  # TensorFlow's default: all cores


@pytest.mark.slow
def test_bad_thread_limit_is_a_clear_error() -> None:
    done = _probe("two")
    assert done.returncode != 0
    assert "TINYFRONT_THREADS must be a whole number of threads >= 1, got 'two'" in done.stderr
