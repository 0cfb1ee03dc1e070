"""Front render time: open a study of 1,000 trials and build the Pareto page's figure (goal: < 2 s).

A synthetic study is written to a fresh SQLite storage with ``optuna.trial.create_trial``: every
trial carries a ``result`` user attribute shaped like a real :class:`~search.result.CandidateResult`
(spec, target, figures labelled measured / estimated, verdicts, sparsity, layers) and the three
budget constraints, so the app reads it exactly as it reads a real study. The figures follow simple
size and cost laws of width, sparsity and precision plus seeded noise; they are test data for the
reader, not measurements.

Timed, per repetition (cold: the app's cache is bypassed):
1. ``search.front.load_front`` (read every trial, judge it, front, knee, hypervolume),
2. ``explorer.app.charts.rejudge`` with other budgets (what a slider move costs),
3. ``charts.front_info`` + ``charts.front_figure`` + ``fig.to_json()`` (what is sent to the browser),
4. the All trials page's table (``tables.trials_table`` + a filter),
5. the Analysis page: Optuna's hypervolume history, parallel coordinates and parameter
   importances (fANOVA) for one objective, each as plotly JSON.
The goal (< 2 s) holds per page: front (cold open), trials table, analysis.

    python benchmarks/front_render.py                   # 1,000 trials, 5 repetitions
    python benchmarks/front_render.py --trials 2000 --repeat 3 --out /tmp/front-bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from search.targets import Target, get_target  # noqa: E402

PRECISIONS = ("float32", "int8", "int8_qat", "int16x8")
_BYTES_PER_WEIGHT = {"float32": 4.0, "float16": 2.0, "int8": 1.0, "int8_qat": 1.0, "int16x8": 1.0}
_ACT_BYTES = {"float32": 4.0, "float16": 4.0, "int8": 1.0, "int8_qat": 1.0, "int16x8": 2.0}
_SPEED = {"float32": 11.1, "float16": 11.1, "int8": 1.0, "int8_qat": 1.0, "int16x8": 2.2}
_ACC_LOSS = {"float32": 0.0, "float16": 0.001, "int8": 0.012, "int8_qat": 0.004, "int16x8": 0.002}


def _fig(value: float, unit: str, kind: str, method: str, error_pct: float | None = None) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": unit, "kind": kind, "method": method, "error_pct": error_pct}


def synthetic_result(number: int, rng: np.random.Generator, target: Target, artifacts_dir: str) -> dict[str, Any]:
    """One realistic-looking ``CandidateResult.to_dict()`` for a MobileNet-v1 variant on ``target``."""
    width = float(rng.choice([0.25, 0.5, 0.75, 1.0]))
    sparsity = round(float(rng.choice(np.arange(0.0, 0.85, 0.1))), 1)
    precision = str(rng.choice(PRECISIONS))
    params = int(220_970 * (width / 0.25) ** 2)
    macs = int(835_648 * (width / 0.25) ** 2)
    model_kb = params * _BYTES_PER_WEIGHT[precision] / 1024 + 20
    flash = model_kb + 45.5
    arena = int(38_080 * width / 0.25 * _ACT_BYTES[precision] / 4 + 2_000)
    sram = arena / 1024 + 8.7
    latency = macs / 1e6 * 24.0 * _SPEED[precision] * (1 + 0.05 * rng.standard_normal())
    keras_acc = float(np.clip(0.90 + 0.07 * width - 0.35 * sparsity**3 + 0.01 * rng.standard_normal(), 0.1, 0.995))
    acc = float(np.clip(keras_acc - _ACC_LOSS[precision] + 0.004 * rng.standard_normal(), 0.1, 0.995))
    figures = {
        "flash_kb": _fig(flash, "kB", "estimated", "model array (measured) + runtime code (estimated)", 2.5),
        "model_flash_kb": _fig(model_kb, "kB", "measured", "size of the .tflite as an alignas(16) C array"),
        "runtime_code_kb": _fig(45.5, "kB", "estimated", "TFLM runtime 16 kB + per-op kernel code", 50.0),
        "sram_kb": _fig(sram, "kB", "estimated", "TFLM arena measured here + scratch + stack", 9.9),
        "arena_bytes": _fig(arena, "B", "measured", "smallest tensor arena that allocates in TFLite Micro"),
        "latency_ms": _fig(latency, "ms", "estimated", "per-layer cost model fitted to published latencies", 30.0),
        "accuracy": _fig(acc, "fraction", "measured", "model.tflite in TFLite Micro on 360 validation samples"),
        "keras_accuracy": _fig(keras_acc, "fraction", "measured", "Keras model before conversion on 360 samples"),
    }
    budgets = {"flash": target.flash_budget_kb, "sram": target.sram_budget_kb, "latency": target.latency_budget_ms}
    verdicts = {
        "flash": flash <= budgets["flash"],
        "sram": sram <= budgets["sram"],
        "latency": latency <= budgets["latency"],
    }
    stored = int(model_kb * 1024)
    layers = [
        {"index": i, "op": op, "macs": macs // 4, "weight_params": params // 4, "weight_bytes": stored // 4,
         "activation_bytes": arena // 3, "output_shape": [1, 4, 4, 8 * (i + 1)]}
        for i, op in enumerate(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"))
    ]  # fmt: skip
    return {
        "spec": {
            "family": "mobilenet_v1",
            "width": width,
            "sparsity": sparsity,
            "precision": precision,
            "resolution": None,
            "epochs": 5,
            "finetune_epochs": 2,
            "batch_size": 64,
            "learning_rate": 0.002,
            "seed": 0,
        },
        "target": target.to_dict(),
        "dataset": {"name": "demo:digits", "num_classes": 10, "input_shape": [8, 8, 1]},
        "figures": figures,
        "verdicts": verdicts,
        "feasible": all(verdicts.values()),
        "macs": macs,
        "params": params,
        "ops": ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"],
        "sparsity": {
            "zero_weight_fraction": round(sparsity * 0.95, 4),
            "stored_bytes": stored,
            "gzip_bytes": int(stored * (1 - 0.6 * sparsity) * 0.9),
            "flash_saved_bytes": 0,
            "note": "tflm stores weights densely: unstructured sparsity saves no flash on the board.",
        },
        "layers": layers,
        "stage_seconds": {"train": 30.0, "prune": 20.0, "convert": 5.0, "measure": 2.0},
        "reused_base": number > 3,
        "artifacts_dir": artifacts_dir,
        "tinyfront_version": "0.1.0",
    }


def _fast_storage(url: str) -> Any:
    """An RDB storage for writing test data quickly: SQLite without fsync (the data is disposable)."""
    import optuna
    import sqlalchemy

    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite"):

        def pragmas(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA journal_mode=MEMORY")

        sqlalchemy.event.listen(storage.engine, "connect", pragmas)
        storage.engine.dispose()
    return storage


def synthetic_study(
    storage: str,
    study_name: str,
    n_trials: int,
    *,
    target: Target | None = None,
    seed: int = 0,
    artifacts_root: Path | None = None,
    failed: int = 0,
) -> None:
    """Write a study of ``n_trials`` COMPLETE trials (plus ``failed`` FAIL ones) to ``storage``.

    With ``artifacts_root``, each trial's ``result.json`` is written to ``<root>/<study>/trial-N``.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from search.result import BUDGETS, OBJECTIVES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = target or get_target("nucleo-l4r5zi")
    objectives = ["accuracy", "latency_ms", "flash_kb"]
    study = optuna.create_study(
        study_name=study_name, storage=_fast_storage(storage), directions=[OBJECTIVES[n] for n in objectives]
    )
    attrs = {
        "target": target.to_dict(),
        "dataset": {"name": "demo:digits"},
        "dataset_fingerprint": "synthetic",
        "dataset_spec": None,
        "data_seed": 0,
        "family": "mobilenet_v1",
        "space": {},
        "objectives": objectives,
        "sampler": "tpe",
        "seed": seed,
        "training": {"epochs": 5, "finetune_epochs": 2, "batch_size": 64, "learning_rate": 0.002},
        "artifacts_root": str(artifacts_root or ""),
        "n_trials": n_trials + failed,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    rng = np.random.default_rng(seed)
    dists = {
        "width": FloatDistribution(0.25, 1.0, step=0.25),
        "sparsity": FloatDistribution(0.0, 0.8, step=0.1),
        "precision": CategoricalDistribution(list(PRECISIONS)),
    }
    trials = []
    for number in range(n_trials):
        folder = (artifacts_root / study_name / f"trial-{number}") if artifacts_root else None
        result = synthetic_result(number, rng, target, str(folder or ""))
        spec = result["spec"]
        trial = create_trial(
            params={"width": spec["width"], "sparsity": spec["sparsity"], "precision": spec["precision"]},
            distributions=dists,
            values=[result["figures"][n]["value"] for n in objectives],
            user_attrs={"result": result, "spec": spec, "artifacts_dir": str(folder or ""), "reused_base": False},
        )
        limits = {"flash": target.flash_budget_kb, "sram": target.sram_budget_kb, "latency": target.latency_budget_ms}
        for budget, key in BUDGETS.items():
            trial.set_constraint(budget, result["figures"][key]["value"] - limits[budget])
        trials.append(trial)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "result.json").write_text(json.dumps(result))
    for _ in range(failed):
        trials.append(
            create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "CandidateError: synthetic failure"})
        )
    study.add_trials(trials)


def _timed_open(storage: str) -> tuple[dict[str, float], Any, Any]:
    """One cold open as the app does it: open the study, read the report, build the figure and its JSON."""
    from explorer.app import charts
    from explorer.app.reading import open_study, read_report

    t0 = time.perf_counter()
    study = open_study(storage, "bench")
    report = read_report(study)
    t1 = time.perf_counter()
    info = charts.front_info(report, "latency_ms", "accuracy")
    payload = charts.front_figure(info).to_json()
    t2 = time.perf_counter()
    return {"read": t1 - t0, "figure": t2 - t1, "payload_kb": len(payload) / 1024}, study, info


def _timed_views(study: Any, report: Any) -> dict[str, float]:
    """The All trials table and the Analysis page's three Optuna figures, as the pages build them."""
    from explorer.app import analysis, tables

    t0 = time.perf_counter()
    table = tables.trials_table(report)
    tables.filter_trials(table, "front")
    t1 = time.perf_counter()
    info = analysis.analysis_info(study)
    analysis.hypervolume_figure(study, info).to_json()
    analysis.parallel_figure(study, info, "accuracy").to_json()
    t2 = time.perf_counter()
    analysis.importance_figure(study, info, "accuracy").to_json()
    t3 = time.perf_counter()
    return {"trials": t1 - t0, "hv+parallel": t2 - t1, "importance": t3 - t2, "analysis": t3 - t1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="folder for the SQLite file (default: a temporary folder)")
    args = parser.parse_args()

    from explorer.app import charts
    from explorer.app.reading import read_report
    from search.front import load_front

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "front-bench.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db}"
        start = time.perf_counter()
        synthetic_study(storage, "bench", args.trials)
        print(f"wrote {args.trials} trials in {time.perf_counter() - start:.1f} s ({db.stat().st_size / 2**20:.1f} MB)")
        _timed_open(storage)  # first run pays the imports (plotly validators, optuna, sqlalchemy)
        cold: list[float] = []
        warm: list[float] = []
        slider: list[float] = []
        views: dict[str, list[float]] = {"trials": [], "analysis": [], "hv+parallel": [], "importance": []}
        parts: dict[str, list[float]] = {"read": [], "figure": []}
        info = None
        for _ in range(args.repeat):
            times, study, info = _timed_open(storage)
            parts["read"].append(times["read"])
            parts["figure"].append(times["figure"])
            cold.append(times["read"] + times["figure"])
            t0 = time.perf_counter()
            report = read_report(study)  # what a refresh costs while a search runs (finished trials cached)
            charts.front_figure(charts.front_info(report)).to_json()
            t1 = time.perf_counter()
            judged = charts.rejudge(report, {"flash_kb": report.budgets["flash_kb"] * 0.5})
            charts.front_figure(charts.front_info(judged)).to_json()
            t2 = time.perf_counter()
            warm.append(t1 - t0)
            slider.append(t2 - t1)
            for name, seconds in _timed_views(study, report).items():
                views[name].append(seconds)
        t0 = time.perf_counter()
        load_front(storage, "bench")
        reference = time.perf_counter() - t0
        assert info is not None
        print(
            f"front: {info.finished} finished, {info.feasible} within budgets, {len(info.front)} on the front, "
            f"knee trial {info.knee}; figure JSON {times['payload_kb']:.0f} KB"
        )
        for name, values in (*parts.items(), ("refresh", warm), ("slider", slider), *views.items()):
            print(f"  {name:8s} p50 {statistics.median(values):.3f} s  max {max(values):.3f} s")
        print(f"  (search.front.load_front alone, one cold call: {reference:.3f} s)")
        p50, p99 = statistics.median(cold), float(np.percentile(cold, 99))
        verdict = "OK" if p99 < 2.0 else "OVER the 2 s goal"
        print(f"cold open (read + figure), {args.repeat} runs: p50 {p50:.3f} s, p99 {p99:.3f} s ({verdict}; "
              f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f})")  # fmt: skip
        for name in ("trials", "analysis"):
            values = views[name]
            p50, p99 = statistics.median(values), float(np.percentile(values, 99))
            verdict = "OK" if p99 < 2.0 else "OVER the 2 s goal"
            print(f"{name} page, {args.repeat} runs: p50 {p50:.3f} s, p99 {p99:.3f} s ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
