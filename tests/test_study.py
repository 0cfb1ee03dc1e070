"""The study: configuration checks, seeded sampling, budget counting, and a real end-to-end search."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from search.data import load_demo
from search.errors import ConfigError
from search.space import SearchSpace, suggest
from search.storage import counts_toward_budget, make_storage, normalize_storage_url
from search.study import StudyConfig, config_from_study, create_or_load_study, make_sampler
from search.targets import get_target
from search.workers import optimize_until

TESTS = Path(__file__).resolve().parent


# A real (tiny) user family: one conv, global pooling, softmax. Widths above 0.5 raise, which is
# how the end-to-end test gets a candidate that fails while the search goes on.
def tiny_cnn(input_shape: tuple[int, int, int], num_classes: int, width: float) -> Any:
    from search._lazy import keras

    if width > 0.5:
        raise ValueError(f"tiny_cnn refuses width {width:g} (test family: widths above 0.5 fail)")
    k = keras()
    filters = max(4, int(round(16 * width)))
    inputs = k.Input(shape=input_shape)
    x = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    outputs = k.layers.Dense(num_classes, activation="softmax")(x)
    return k.Model(inputs, outputs)


def _config(tmp_path: Path, **changes: Any) -> StudyConfig:
    base = StudyConfig(
        target=get_target("nucleo-f446re"),
        study_name="t",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        artifacts_root=str(tmp_path / "artifacts"),
    )
    return replace(base, **changes)


def test_config_validation() -> None:
    target = get_target("nucleo-f446re")
    with pytest.raises(ConfigError, match="unknown objective 'energy'"):
        StudyConfig(target=target, objectives=("accuracy", "energy"))
    with pytest.raises(ConfigError, match="unknown sampler 'cmaes'; expected one of: tpe, nsga2, random"):
        StudyConfig(target=target, sampler="cmaes")
    with pytest.raises(ConfigError, match="epochs must be >= 1, got 0"):
        StudyConfig(target=target, epochs=0)
    with pytest.raises(ConfigError, match="storage must be a database URL"):
        normalize_storage_url("tinyfront.db")


def test_relative_sqlite_url_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_storage_url("sqlite:///tinyfront.db") == f"sqlite:///{tmp_path / 'tinyfront.db'}"
    assert normalize_storage_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"


def test_study_records_itself_and_refuses_another_search(tmp_path: Path) -> None:
    data = load_demo()
    config = _config(tmp_path)
    study = create_or_load_study(config, data)
    attrs = study.user_attrs
    assert attrs["target"]["name"] == "nucleo-f446re"
    assert attrs["dataset_fingerprint"] == data.fingerprint and attrs["dataset"]["name"] == data.name
    assert attrs["family"] == "mobilenet_v1" and attrs["objectives"] == ["accuracy", "latency_ms", "flash_kb"]
    assert attrs["space"]["precisions"] == ["float32", "int8", "int8_qat", "int16x8"]
    assert attrs["sampler"] == "tpe" and attrs["seed"] == 0 and attrs["tinyfront_version"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]

    with pytest.raises(ConfigError, match="created for target 'nucleo-f446re'.*not 'stm32h743'"):
        create_or_load_study(replace(config, target=get_target("stm32h743")), data)
    with pytest.raises(ConfigError, match=r"with other values \(latency_budget_ms: 250 → 10\); use another"):
        create_or_load_study(replace(config, target=config.target.with_budgets(latency_budget_ms=10)), data)
    with pytest.raises(ConfigError, match="searches family 'mobilenet_v1', got 'ds_cnn'"):
        create_or_load_study(replace(config, family="ds_cnn"), data)
    with pytest.raises(ConfigError, match="fingerprint"):
        create_or_load_study(config, load_demo(seed=1))
    with pytest.raises(ConfigError, match="objectives cannot change"):
        create_or_load_study(replace(config, objectives=("accuracy", "flash_kb")), data)

    # Same search, other seed and space: continues and records the change.
    again = create_or_load_study(replace(config, seed=5, space=SearchSpace(width_max=0.5)), data)
    assert again._study_id == study._study_id
    assert again.user_attrs["seed"] == 5 and again.user_attrs["space"]["width_max"] == 0.5
    assert again.user_attrs["created"] == attrs["created"]

    rebuilt = config_from_study(config.storage, "t")
    assert rebuilt.target == config.target and rebuilt.space == SearchSpace(width_max=0.5).resolved(config.target)
    with pytest.raises(ConfigError, match="no study 'nope'.*studies there: t"):
        config_from_study(config.storage, "nope")


def test_resuming_with_other_training_settings_is_refused(tmp_path: Path) -> None:
    """Issue 11, item 3: `search --epochs 3` then `search --epochs 5` must not mix two trainings."""
    data = load_demo()
    config = _config(tmp_path, epochs=3)
    create_or_load_study(config, data)
    for change, key, stored, given in (
        ({"epochs": 5}, "epochs", "3", "5"),
        ({"finetune_epochs": 0}, "finetune_epochs", "2", "0"),
        ({"batch_size": 32}, "batch_size", "64", "32"),
        ({"learning_rate": 1e-3}, "learning_rate", "0.003", "0.001"),
    ):
        with pytest.raises(ConfigError, match=f"trains with {key} = {stored}, got {given}; training settings cannot"):
            create_or_load_study(replace(config, **change), data)
    study = create_or_load_study(config, data)  # the same settings resume
    assert study.user_attrs["training"]["epochs"] == 3


def _synthetic(trial: optuna.trial.Trial, space: SearchSpace) -> tuple[float, float]:
    """A cheap stand-in objective for sampler tests only (the product objective is make_objective)."""
    p = suggest(trial, space)
    bits = {"float32": 32, "int16x8": 16, "int8": 8, "int8_qat": 8}[p["precision"]]
    flash = 300 * p["width"] ** 2 * bits / 8 * (1 - 0.3 * p["sparsity"])
    trial.set_constraint("flash", flash - 400)
    return 0.5 + 0.4 * p["width"] - 0.2 * p["sparsity"] ** 2 - (0.05 if bits == 8 else 0), flash


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_same_seed_same_parameter_sequence(sampler: str) -> None:
    space = SearchSpace().resolved(get_target("nucleo-f446re"))

    def params(run: int) -> list[dict[str, Any]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler, seed=11))
        optimize_until(study, lambda t: _synthetic(t, space), 14)
        return [t.params for t in study.trials]

    first, second = params(1), params(2)
    assert len(first) == 14 and first == second
    assert len({json.dumps(p, sort_keys=True) for p in first}) > 7  # not one point repeated


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it


def test_objects_alive_before_the_trials_are_left_out_of_collections_while_they_run() -> None:
    space = SearchSpace().resolved(get_target("nucleo-f446re"))
    gc.collect()
    alive = len(gc.get_objects())
    frozen: list[int] = []
    made: list[weakref.ref[_Node]] = []

    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        frozen.append(gc.get_freeze_count())
        made.append(weakref.ref(_Node()))
        return _synthetic(trial, space)

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 0))
    optimize_until(study, objective, 3)
    assert len(frozen) == 3 and min(frozen) >= 0.9 * alive  # what lived before is left out...
    assert all(ref() is None for ref in made)  # ...what the trials made is still collected
    assert gc.get_freeze_count() == 0  # and everything is put back afterwards

    gc.freeze()  # something else froze objects: left as it is
    try:
        count = gc.get_freeze_count()
        optimize_until(study, objective, 4)
        assert gc.get_freeze_count() >= 0.9 * count  # not put back by the search
    finally:
        gc.unfreeze()


def test_what_a_trial_leaves_alive_is_frozen_and_freed_by_the_next_whole_heap_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trial's survivors (a cache entry) are left out of the collections after the next trials;
    one that becomes garbage later (the entry evicted) is freed by the collection of the whole heap."""
    from search import workers

    monkeypatch.setattr(workers, "FULL_COLLECTION_EVERY", 3)
    space = SearchSpace().resolved(get_target("nucleo-f446re"))
    cache: list[_Node] = []
    kept: list[weakref.ref[_Node]] = []
    seen: list[bool] = []

    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        if trial.number == 0:
            cache.append(_Node())  # kept by the "cache": survives this trial's collection
            kept.append(weakref.ref(cache[0]))
        elif trial.number == 1:
            cache.clear()  # evicted: cyclic garbage, but frozen
        else:
            seen.append(kept[0]() is not None)
        return _synthetic(trial, space)

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 0))
    optimize_until(study, objective, 5)
    # trial 2: still there (the collection after trial 1 left it out); trials 3, 4: freed after trial 3
    assert seen == [True, False, False]
    assert gc.get_freeze_count() == 0


_EXIT_PROBE = """
import atexit, gc, logging, sys
handler = logging.FileHandler(sys.argv[1], delay=True)
logging.getLogger("probe").addHandler(handler)
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 1000))  # runs after the freeze
from search.workers import skip_exit_collection
skip_exit_collection()
skip_exit_collection()
atexit.register(print, "later handler ran")
logging.getLogger("probe").warning("written at exit")
"""


def test_a_worker_process_exits_without_the_last_collection_and_runs_its_exit_handlers(tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    done = subprocess.run([sys.executable, "-c", _EXIT_PROBE, str(log)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["later handler ran", "frozen at exit: True"]
    assert log.read_text() == "written at exit\n"  # logging still flushed


def test_failed_candidates_count_toward_the_budget(tmp_path: Path) -> None:
    space = SearchSpace().resolved(get_target("nucleo-f446re"))
    study = optuna.create_study(
        storage=make_storage(f"sqlite:///{tmp_path / 'f.db'}"),
        directions=["maximize", "minimize"],
        sampler=make_sampler("random", 0),
    )

    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        if trial.number % 2:
            trial.set_user_attr("fail_reason", "CandidateError: odd trials fail")
            raise RuntimeError("odd")
        return _synthetic(trial, space)

    optimize_until(study, objective, 6)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL"] * 3
    assert all(counts_toward_budget(t) for t in study.trials)
    # A FAIL without a reason (interrupted) does not count: the budget is refilled.
    interrupted = study.ask()
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    optimize_until(study, objective, 7)
    assert len(study.trials) == 8 and sum(counts_toward_budget(t) for t in study.trials) == 7


@pytest.mark.slow
def test_end_to_end_search_on_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.front import load_front
    from search.workers import run_search

    monkeypatch.syspath_prepend(str(TESTS))
    config = _config(
        tmp_path,
        family="test_study:tiny_cnn",
        space=SearchSpace(width_min=0.25, width_max=0.75, width_step=0.5, sparsity_max=0.0, precisions=("int8",)),
        sampler="random",
        seed=1,
        epochs=1,
        finetune_epochs=1,
    )
    seen: list[int] = []
    study = run_search(config, n_trials=3, progress=lambda p: seen.append(p.done))
    trials = study.trials
    assert len(trials) == 3 and seen[-1] == 3
    by_width = {t.number: t.params["width"] for t in trials}
    assert set(by_width.values()) == {0.25, 0.75}, "seed 1 must draw both widths (pick another seed if not)"
    for t in trials:
        if t.params["width"] > 0.5:
            assert t.state.name == "FAIL"
            assert "tiny_cnn refuses width 0.75" in t.user_attrs["fail_reason"]
            assert "\n" not in t.user_attrs["fail_reason"]
        else:
            assert t.state.name == "COMPLETE"
            result = t.user_attrs["result"]
            assert result["spec"]["width"] == 0.25 and result["spec"]["epochs"] == 1
            assert {"accuracy", "latency_ms", "flash_kb", "sram_kb"} <= set(result["figures"])
            assert result["figures"]["flash_kb"]["kind"] in ("measured", "estimated")
            assert 0.0 <= t.values[0] <= 1.0 and t.values[2] == result["figures"]["flash_kb"]["value"]
            assert set(t.constraints) == {"flash", "sram", "latency"}
            assert t.user_attrs["constraints"] == [t.constraints[k] for k in ("flash", "sram", "latency")]
            assert Path(t.user_attrs["artifacts_dir"], "model.tflite").is_file()
            if "duplicate_of" in t.user_attrs:  # the only width that builds, drawn again: served, not rebuilt
                earlier = trials[t.user_attrs["duplicate_of"]]
                assert earlier.number < t.number and earlier.params == t.params and earlier.values == t.values
                assert t.user_attrs["artifacts_dir"] == earlier.user_attrs["artifacts_dir"]
                assert t.user_attrs["stage_seconds"] == {}
            else:
                assert Path(t.user_attrs["artifacts_dir"]).name == f"trial-{t.number}"
                assert set(t.user_attrs["stage_seconds"]) >= {"train", "convert", "measure"}
                assert t.user_attrs["reused_base"] is False
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sum("duplicate_of" not in t.user_attrs for t in complete) == 1
    assert list((tmp_path / "artifacts" / "t" / "base_models").glob("*.keras"))

    report = load_front(config.storage, "t")
    assert [r.number for r in report.trials] == [0, 1, 2]
    feasible = [t.number for t in complete if all(v <= 0 for v in t.constraints.values())]
    assert sorted(report.front) == sorted(n for n in report.front if n in feasible)
    assert report.feasible_count == len(feasible)
    if feasible:
        assert report.knee in report.front and 0 < report.hypervolume <= 1
    json.dumps(report.to_dict())
    # Resuming with a larger budget runs only the missing trials.
    study = run_search(config, n_trials=4)
    assert len(study.trials) == 4 and [t.number for t in study.trials[:3]] == [0, 1, 2]

    # Another board: figures re-derived from the stored artifacts, nothing retrained.
    from explorer.commands.front import render_report
    from search.front import recheck

    with pytest.raises(ConfigError, match="other hardware.*tinyfront recheck"):
        load_front(config.storage, "t", get_target("stm32h743"))
    other = recheck(config.storage, "t", get_target("stm32h743"))
    assert other.rechecked and other.target["name"] == "stm32h743"
    for t in study.trials:
        row = other.row(t.number)
        if t.state.name == "COMPLETE":
            stored = t.user_attrs["result"]["figures"]
            assert row.figures["accuracy"] == stored["accuracy"]  # accuracy is the stored one
            assert row.figures["latency_ms"]["value"] != stored["latency_ms"]["value"]  # 480 MHz M7 vs 180 MHz M4
        else:
            assert row.figures == {} and not row.feasible
    text = render_report(other, all_trials=True)
    assert "rechecked against stm32h743" in text and "tiny_cnn refuses width 0.75" in text


@pytest.mark.slow
def test_repeated_point_is_served_from_the_earlier_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.candidate
    from search.workers import run_worker

    monkeypatch.syspath_prepend(str(TESTS))
    built: list[float] = []  # widths of the candidates really evaluated (the real function, counted)
    real_evaluate = search.candidate.evaluate_candidate

    def counting_evaluate(spec: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(spec.width)
        return real_evaluate(spec, *args, **kwargs)

    monkeypatch.setattr(search.candidate, "evaluate_candidate", counting_evaluate)
    config = _config(
        tmp_path,
        family="test_study:tiny_cnn",
        space=SearchSpace(width_min=0.25, width_max=0.5, sparsity_max=0.2, precisions=("int8", "float32")),
        sampler="random",
        epochs=1,
        finetune_epochs=1,
    )
    data = load_demo()
    study = create_or_load_study(config, data)
    point = {"width": 0.25, "sparsity": 0.1, "precision": "int8"}
    study.enqueue_trial(point)
    study.enqueue_trial(point)
    study = run_worker(config, 2, dataset=data)
    first, second = study.trials
    assert first.state.name == second.state.name == "COMPLETE"
    assert first.params == second.params == point
    assert "duplicate_of" not in first.user_attrs and second.user_attrs["duplicate_of"] == 0
    assert second.values == first.values and 0.0 <= first.values[0] <= 1.0 and first.values[2] > 0
    assert second.user_attrs["result"] == first.user_attrs["result"]
    assert second.user_attrs["spec"] == first.user_attrs["spec"]
    assert second.user_attrs["artifacts_dir"] == first.user_attrs["artifacts_dir"]
    assert second.constraints == first.constraints and set(second.constraints) == {"flash", "sram", "latency"}
    assert second.user_attrs["constraints"] == first.user_attrs["constraints"]
    assert second.user_attrs["stage_seconds"] == {} and set(first.user_attrs["stage_seconds"]) >= {"train"}
    # One candidate was built: one evaluation, one trial folder.
    assert built == [0.25]
    assert sorted(p.name for p in (tmp_path / "artifacts" / "t").glob("trial-*")) == ["trial-0"]
    assert sum(counts_toward_budget(t) for t in study.trials) == 2  # a duplicate uses one trial of the budget

    # Other training settings cannot join this study (issue 11, item 3): its trials would mix them.
    with pytest.raises(ConfigError, match="trains with learning_rate = 0.003, got 0.001"):
        run_worker(replace(config, learning_rate=1e-3), 3, dataset=data)
    assert len(study.trials) == 2 and built == [0.25]


@pytest.mark.slow
def test_two_local_worker_processes_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.workers import run_search

    monkeypatch.syspath_prepend(str(TESTS))
    config = _config(
        tmp_path,
        family="test_study:tiny_cnn",
        space=SearchSpace(width_min=0.25, width_max=0.5, sparsity_max=0.0, precisions=("int8", "float32")),
        epochs=1,
        finetune_epochs=1,
    )
    seen: list[int] = []
    study = run_search(config, n_trials=4, workers=2, progress=lambda p: seen.append(p.done))
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials))) and len(trials) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert seen[-1] >= 4 and study.user_attrs["n_trials"] == 4


def run_together(commands: list[list[str]], cwd: Path, timeout: float) -> list[str]:
    """Start every command at once (the repository and tests/ importable), wait for them all and
    check each exited with 0; returns their outputs (stdout and stderr together)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]), TF_CPP_MIN_LOG_LEVEL="2")
    procs = [
        subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command in commands
    ]
    outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    return outputs


def race_for_one_slot(url: str, tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    """Two processes (tests/slot_race.py) count a 1-trial study's trials at the same moment and wait
    0.3 s before creating their trial; returns the study's trials once both have ended."""
    optuna.create_study(study_name="race", storage=make_storage(url), directions=["maximize"])
    start = time.time() + 8  # both have imported Optuna by then
    run_together([[sys.executable, str(TESTS / "slot_race.py"), url, str(start)]] * 2, tmp_path, timeout=120)
    return optuna.load_study(study_name="race", storage=make_storage(url)).trials


def test_a_trial_slot_lock_is_released_once_even_when_the_release_fails() -> None:
    from search.storage import TrialSlots

    calls: list[str] = []

    def lost() -> None:
        calls.append("release")
        raise OSError("connection lost")

    slots = TrialSlots(lambda: calls.append("acquire"), lost)
    slots.acquire()
    slots.acquire()  # already held: not taken twice
    with pytest.raises(OSError):
        slots.release()
    slots.release()  # not held any more: the failed release is not tried again
    assert calls == ["acquire", "release"] and not slots.held
    assert slots.releasing(lambda trial: trial * 2)(21) == 42 and calls == ["acquire", "release"]


def test_two_workers_counting_the_last_slot_at_once_take_it_once(tmp_path: Path) -> None:
    """Without the trial-slot lock both racers create a trial (2 trials for a budget of 1)."""
    trials = race_for_one_slot(f"sqlite:///{tmp_path / 'race.db'}", tmp_path)
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]


@pytest.mark.slow
def test_workers_started_for_a_study_that_cannot_be_created_stop_without_a_trial(tmp_path: Path) -> None:
    """The worker processes start (and import TensorFlow) while the parent creates the study; when
    the parent refuses the study, they are stopped before running anything."""
    import multiprocessing

    from search.workers import run_search, run_worker

    config = _config(tmp_path, epochs=1, finetune_epochs=1)
    run_worker(config, 1)
    with pytest.raises(ConfigError, match="trains with learning_rate = 0.003, got 0.001"):
        run_search(replace(config, learning_rate=1e-3), n_trials=3, workers=2)
    assert multiprocessing.active_children() == []
    study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    assert len(study.trials) == 1
