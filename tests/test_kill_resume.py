"""SIGKILL a running `tinyfront search` mid-trial, resume it, and check nothing finished was lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from search.storage import make_storage

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="k", storage=make_storage(url)).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    cmd = [
        sys.executable, "-m", "explorer.cli", "search",
        "--target", "nucleo-f446re", "--family", "test_study:tiny_cnn", "--study", "k", "--storage", url,
        "--width-min", "0.25", "--width-max", "0.5", "--sparsity-max", "0", "--precisions", "int8,float32",
        "--sampler", "random", "--trials", "3", "--epochs", "1", "--finetune-epochs", "1",
        "--artifacts", str(tmp_path / "artifacts"), "--heartbeat-interval", "1", "--grace-period", "3",
    ]  # fmt: skip
    # The first run goes through tests/blocking_search.py: its second candidate build writes
    # `blocked` and sleeps, so the kill lands inside a running trial on an observed event.
    blocked = tmp_path / "blocked"
    first_cmd = [sys.executable, "-m", "blocking_search", *cmd[3:]]
    log = (tmp_path / "first.log").open("w")
    env = {**_env(), "TINYFRONT_TEST_BLOCKED": str(blocked)}
    proc = subprocess.Popen(first_cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:
        while not blocked.exists():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            if time.monotonic() > deadline:
                pytest.fail("the second candidate build did not start within 240 s")
            time.sleep(0.1)
        states = [t.state.name for t in _trials(url)]
        assert "COMPLETE" in states and states[-1] == "RUNNING", states
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    before = _trials(url)
    finished = {t.number: (t.params, t.values, t.user_attrs["result"]) for t in before if t.state.name == "COMPLETE"}
    killed = [t.number for t in before if t.state.name == "RUNNING"]
    assert finished and len(killed) == 1

    resumed = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _trials(url)
    by_number = {t.number: t for t in after}
    for number, (params, values, result) in finished.items():
        t = by_number[number]
        assert t.state.name == "COMPLETE" and t.params == params and t.values == values
        assert t.user_attrs["result"] == result
    stale = by_number[killed[0]]
    assert stale.state.name == "FAIL" and "fail_reason" not in stale.user_attrs  # failed by heartbeat
    assert [t.number for t in after] == list(range(len(after)))
    assert sum(t.state.name == "COMPLETE" for t in after) == 3  # budget refilled; the killed slot does not count
    assert not any(t.state.name == "RUNNING" for t in after)
    assert "on the feasible front" in resumed.stdout

    # `tinyfront front --json` reports exactly what the storage holds.
    out = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "front", "--study", "k", "--storage", url, "--json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert [r["number"] for r in report["trials"]] == [t.number for t in after]
    for row in report["trials"]:
        t = by_number[row["number"]]
        assert row["state"] == t.state.name and row["params"] == t.params
        if t.state.name == "COMPLETE":
            assert row["values"]["accuracy"] == t.values[0] and row["values"]["flash_kb"] == t.values[2]
            assert row["feasible"] == all(v <= 0 for v in t.constraints.values())
        else:
            assert row["fail_reason"].startswith("stopped before finishing")
    assert set(report["front"]) <= {r["number"] for r in report["trials"] if r["feasible"]}
