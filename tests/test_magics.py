"""The IPython magics driven through a real ``InteractiveShell``: returned objects, errors, interrupts.

The slow tests share one working folder (module fixture) holding a real search: a cell-defined family
searched on the digits held in a notebook variable (2 trials, 3 epochs).
"""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

SMALL_CNN = """
def build(input_shape, num_classes, width):
    import tf_keras as keras

    filters = max(8, int(round(16 * width)))
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)
"""
TINY = "--target nucleo-l4r5zi --epochs 3 --finetune-epochs 0 --width-min 0.5 --width-max 1 --width-step 0.5 "
TINY += "--sparsity-max 0 --precisions int8,float32"


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "explorer")
    return sh


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return tmp_path


def _usage_error(shell: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("tinyfront", line)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ------------------------------------------------------------------------------------------- fast


def test_import_explorer_stays_light() -> None:
    code = "import sys, explorer; print('IPython' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_help_shows_every_subcommand_and_its_arguments(shell: InteractiveShell, capsys: Any) -> None:
    from explorer.magics import TinyfrontMagics

    doc = TinyfrontMagics.tinyfront.__doc__ or ""
    for text in ("search", "front", "recheck", "export", "targets", "show", "plot", "--data", "--trials", "--format"):
        assert text in doc
    assert "notebook variable holding (x, y)" in doc
    assert shell.run_line_magic("tinyfront", "export -h") is None
    assert "--format {tflm,onnx}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "%tinyfront: the following arguments are required: SUBCOMMAND"),
        ("frobnicate", "invalid choice: 'frobnicate'"),
        ("search --trials 2", "%tinyfront search: the following arguments are required: --target"),
        ("search --target nucleo-l4r5zi --trials many", "argument --trials: must be a whole number, got 'many'"),
        ("search --target atari-2600", "%tinyfront search: unknown target 'atari-2600'"),
        ("search --target nucleo-l4r5zi --family resnet9000", "unknown family 'resnet9000'"),
        ("search --target nucleo-l4r5zi --data no_such_var", "--data no_such_var: no notebook variable"),
        ("search --target nucleo-l4r5zi --precisions int4", "unknown precision 'int4'"),
        (
            "front --study missing",
            "%tinyfront front: no study 'missing' in sqlite:///tinyfront.db: the storage file does not exist",
        ),
        (
            "show --study missing --trial 0",
            "%tinyfront show: no study 'missing' in sqlite:///tinyfront.db: the storage file does not exist",
        ),
        ("export --study s --format tflm -o out.zip", "%tinyfront export: --study needs --trial N"),
        ("export --study s --trial 0 --format zip -o out.zip", "argument --format: invalid choice: 'zip'"),
    ],
)
def test_bad_arguments_raise_one_line_usage_errors(
    shell: InteractiveShell, in_tmp: Path, line: str, expected: str
) -> None:
    assert expected in _usage_error(shell, line)


def test_storage_defaults_to_the_environment_of_each_call(
    shell: InteractiveShell, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The magic's parser is built once, at %load_ext; $TINYFRONT_STORAGE is read when a line runs."""
    import optuna

    from search.storage import make_storage

    url = f"sqlite:///{in_tmp / 'env.db'}"
    optuna.create_study(study_name="there", storage=make_storage(url))
    monkeypatch.setenv("TINYFRONT_STORAGE", url)
    for line in ("front --study nope", "show --study nope --trial 0"):
        assert f"no study 'nope' in {url}; studies there: there" in _usage_error(shell, line)
    other = f"sqlite:///{in_tmp / 'other.db'}"
    message = _usage_error(shell, f"plot --study nope --storage {other}")  # an explicit --storage wins
    assert f"no study 'nope' in {other}: the storage file does not exist" in message


def test_data_variable_is_checked_before_anything_runs(shell: InteractiveShell, in_tmp: Path) -> None:
    shell.user_ns["one_class"] = (np.zeros((20, 8, 8)), np.zeros(20, dtype=int))
    shell.user_ns["not_arrays"] = {"images": np.zeros((20, 8, 8))}
    line = "search --target nucleo-l4r5zi --data {}"
    assert "expected at least 2 classes, found 1" in _usage_error(shell, line.format("one_class"))
    message = _usage_error(shell, line.format("not_arrays"))
    assert "expected variable 'not_arrays' to hold (x, y) arrays or a dict with keys x and y" in message
    assert not (in_tmp / "tinyfront.db").exists()


def test_targets_returns_a_dataframe_of_budgets(shell: InteractiveShell) -> None:
    df = shell.run_line_magic("tinyfront", "targets")
    row = df.loc["nucleo-f446re"]
    assert (row["flash_kb"], row["sram_kb"], row["clock_mhz"]) == (512, 128, 180)
    assert (row["model_flash_kb"], row["model_sram_kb"], row["latency_budget_ms"]) == (384, 96, 250)


def test_family_cell_is_checked_and_written_as_a_module(shell: InteractiveShell, in_tmp: Path) -> None:
    family = shell.run_cell_magic("tinyfront_family", "small_cnn", SMALL_CNN)
    assert family.spec == "tinyfront_family_small_cnn:build"
    assert family.path == in_tmp / ".tinyfront" / "families" / "tinyfront_family_small_cnn.py"
    assert "def build(input_shape, num_classes, width)" in family.path.read_text()
    assert str(family.path.parent) in sys.path
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(family.path.parent)
    # a worker process (spawned, or `tinyfront worker` started from the notebook) imports the same builder
    code = "import inspect, tinyfront_family_small_cnn as m; print(*inspect.signature(m.build).parameters)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=in_tmp)
    assert out.stdout.split() == ["input_shape", "num_classes", "width"]
    bad = {
        "2fast": ("def build(a, b, c): pass", "NAME must be a Python identifier"),
        "ds_cnn": ("def build(a, b, c): pass", "is a built-in family"),
        "no_build": ("def make(a, b, c): pass", "the cell must define a function build"),
        "two_args": ("def build(a, b): pass", "build must take (input_shape, num_classes, width)"),
        "broken": ("def build(a, b, c) pass", "the cell failed: SyntaxError"),
    }
    for name, (cell, expected) in bad.items():
        with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            shell.run_cell_magic("tinyfront_family", name, cell)
        assert not (family.path.parent / f"tinyfront_family_{name}.py").exists()


# ------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def searched(shell: InteractiveShell, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real 2-trial search of a cell-defined family on digits held in a notebook variable."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("magics")
    old_cwd, old_path, old_pp = Path.cwd(), list(sys.path), os.environ.get("PYTHONPATH")
    os.chdir(folder)
    try:
        digits = load_digits()
        shell.user_ns["digits"] = {"x": digits.images, "y": digits.target}
        shell.run_cell_magic("tinyfront_family", "small_cnn", SMALL_CNN)
        start = time.monotonic()
        summary = shell.run_line_magic("tinyfront", f"search {TINY} --data digits --family small_cnn --trials 2")
        yield {"folder": folder, "summary": summary, "seconds": time.monotonic() - start}
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if old_pp is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pp


def _study(folder: Path, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'tinyfront.db'}")


@pytest.mark.slow
def test_search_returns_the_front_of_a_real_study(searched: dict[str, Any]) -> None:
    from search.data import load_dataset

    s, folder = searched["summary"], searched["folder"]
    assert s.study_name == "nucleo-l4r5zi-small_cnn"
    assert (s.trials, s.complete, s.failed, s.interrupted) == (2, 2, 0, False)
    assert s.feasible == s.report.feasible_count == 2  # a ~5 KB model fits a 1,792 KB / 544 KB / 500 ms budget
    assert list(s.front.index) == s.report.front and s.report.knee in s.front.index
    for n in s.front.index:
        row = s.report.row(n)
        for key in ("accuracy", "latency_ms", "flash_kb", "sram_kb"):
            assert s.front.loc[n, key] == pytest.approx(row.figures[key]["value"])
            assert s.front.loc[n, f"{key}_kind"] == row.figures[key]["kind"]
        assert s.front.loc[n, "accuracy_kind"] == "measured"
        assert 0.0 < s.front.loc[n, "accuracy"] <= 1.0
    attrs = _study(folder, s.study_name).user_attrs
    assert attrs["family"] == "tinyfront_family_small_cnn:build"
    saved = Path(attrs["dataset_spec"])  # the notebook arrays, saved so worker processes can load them
    assert saved.parent == folder / ".tinyfront" / "data" and saved.name.startswith("digits-")
    assert load_dataset(saved).fingerprint == attrs["dataset_fingerprint"]
    assert attrs["dataset"]["name"] == "notebook:digits" and attrs["dataset"]["splits"]["val"]["samples"] == 360


@pytest.mark.slow
def test_show_plot_front_and_export(shell: InteractiveShell, searched: dict[str, Any], monkeypatch: Any) -> None:
    import plotly.graph_objects as go

    from explorer.notebook_views import candidate_summary
    from search.result import CandidateResult

    s, folder = searched["summary"], searched["folder"]
    monkeypatch.chdir(folder)
    knee = s.report.knee
    result = shell.run_line_magic("tinyfront", f"show --study {s.study_name} --trial {knee}")
    assert isinstance(result, CandidateResult)
    assert result.figures["accuracy"].value == pytest.approx(s.front.loc[knee, "accuracy"])
    assert result.feasible and result.spec.family == "tinyfront_family_small_cnn:build"
    assert "latency_ms:" in candidate_summary(result) and "(budget 500)" in candidate_summary(result)

    front = shell.run_line_magic("tinyfront", f"front --study {s.study_name} --all")
    assert len(front) == 2 and front["state"].tolist() == ["COMPLETE", "COMPLETE"]
    fig = shell.run_line_magic("tinyfront", f"plot --study {s.study_name} --x flash_kb")
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert "feasible" in names and f"knee (trial {knee})" in names
    feasible = next(t for t in fig.data if t.name == "feasible")
    assert sorted(feasible.x) == pytest.approx(sorted(front["flash_kb"]))

    info = shell.run_line_magic("tinyfront", f"export --study {s.study_name} --trial {knee} --format tflm -o knee.zip")
    with zipfile.ZipFile(folder / "knee.zip") as z:
        sizes = {i.filename.split("/", 1)[1]: i.file_size for i in z.infolist()}  # knee/<file>
    assert info.format == "tflm" and {"model_data.cc", "model_settings.h", "main.cc"} <= set(sizes)
    assert all(sizes[name] == size for name, size in info.files.items())
    assert "exists" in _usage_error(shell, f"export --study {s.study_name} --trial {knee} --format tflm -o knee.zip")


@pytest.mark.slow
def test_recheck_on_a_faster_clock_of_the_same_core(shell: InteractiveShell, searched: dict[str, Any]) -> None:
    s = searched["summary"]
    storage = f"sqlite:///{searched['folder'] / 'tinyfront.db'}"
    report = shell.run_line_magic(
        "tinyfront", f"recheck --study {s.study_name} --target nucleo-f446re --json --storage {storage}"
    )
    assert report["rechecked"] and report["target"]["name"] == "nucleo-f446re"
    assert report["budgets"] == {"flash_kb": 384, "sram_kb": 96, "latency_ms": 250}
    before = {r.number: r.values["latency_ms"] for r in s.report.trials}
    for row in report["trials"]:  # Cortex-M4 at 180 MHz instead of 120 MHz: every estimate is faster
        assert row["values"]["latency_ms"] < before[row["number"]]


@pytest.mark.slow
def test_resume_and_kernel_interrupt_keep_the_study_intact(
    shell: InteractiveShell, searched: dict[str, Any], monkeypatch: Any
) -> None:
    from optuna.trial import TrialState

    from search.storage import INTERRUPTED_REASON, counts_toward_budget

    folder = searched["folder"]
    monkeypatch.chdir(folder)
    start = time.monotonic()
    again = shell.run_line_magic("tinyfront", f"search {TINY} --data digits --family small_cnn --trials 2")
    assert again.trials == 2 and time.monotonic() - start < 15  # resumed: nothing left to run

    line = f"search {TINY} --data digits --family small_cnn --trials 3 --study interrupted"
    import search.candidate

    real_evaluate = search.candidate.evaluate_candidate
    builds = []

    def interrupt_in_second_build(*args: Any, **kwargs: Any) -> Any:
        # What the kernel's interrupt button does (SIGINT to the main thread), on an observed event: the
        # second candidate build starts, after at least one trial finished. Not after a guessed delay.
        builds.append(1)
        if len(builds) >= 2:
            _thread.interrupt_main()
            time.sleep(60)  # the KeyboardInterrupt ends this sleep
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(search.candidate, "evaluate_candidate", interrupt_in_second_build)
    # A kernel handles SIGINT; a suite started with `nohup cmd &` inherits it ignored, and then
    # interrupt_main() does nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = shell.run_line_magic("tinyfront", line)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(search.candidate, "evaluate_candidate", real_evaluate)
    assert summary.interrupted and 1 <= summary.complete < 3
    trials = _study(folder, "interrupted").get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [r for r in summary.report.trials if r.state == "FAIL"]
    assert all(r.fail_reason == INTERRUPTED_REASON for r in stopped)
    assert sum(counts_toward_budget(t) for t in trials) == summary.complete  # interrupted trials are re-run

    resumed = shell.run_line_magic("tinyfront", line.replace("--trials 3", "--trials 2"))
    assert not resumed.interrupted and resumed.complete >= 2
    done = [t for t in _study(folder, "interrupted").get_trials(deepcopy=False) if counts_toward_budget(t)]
    assert len(done) == max(2, summary.complete)
