"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest on a study in a temporary working folder.

The study is written by ``benchmarks/front_render.py``'s ``synthetic_study`` (trials with realistic
``result`` user attributes, no training), so these tests are fast; the browser test runs a real search.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.app import charts, forms, launcher, state, tables
from explorer.app.reading import open_study, read_report

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "explorer" / "app" / "main.py"
STUDY = "synthetic"
N_TRIALS = 30
TIMEOUT = 60


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("front_render", REPO / "benchmarks" / "front_render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder holding a study of 30 finished + 2 failed trials (results on disk)."""
    folder = tmp_path_factory.mktemp("appwork")
    _bench_module().synthetic_study(
        f"sqlite:///{folder / state.DB_NAME}",
        STUDY,
        N_TRIALS,
        seed=3,
        artifacts_root=folder / state.ARTIFACTS_DIR,
        failed=2,
    )
    return folder


@pytest.fixture
def workdir(study_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(state.WORKDIR_ENV, str(study_dir))
    monkeypatch.delenv(state.STORAGE_ENV, raising=False)
    return study_dir


@pytest.fixture
def empty_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(state.WORKDIR_ENV, str(tmp_path))
    monkeypatch.delenv(state.STORAGE_ENV, raising=False)
    return tmp_path


def _report() -> Any:
    return read_report(open_study(state.storage_url(), STUDY))


def _app(page: str | None = None, **session: Any) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _frame(at: AppTest, first_column: str) -> Any:
    """The first dataframe shown whose first column is ``first_column``."""
    for df in at.dataframe:
        value = df.value
        if len(value.columns) and value.columns[0] == first_column:
            return value
    raise AssertionError(f"no table starting with column {first_column!r}")


def _text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# ----------------------------------------------------------------------------------------------- start-up


def test_app_imports_no_tensorflow(workdir: Path) -> None:
    """Every page's imports, and a run of the entry script, leave TensorFlow unloaded."""
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "import explorer.commands.app, explorer.app.charts, explorer.app.forms, explorer.app.launcher\n"
        "import explorer.app.reading, explorer.app.tables, explorer.app.exports, explorer.app.ui\n"
        f"at = AppTest.from_file({str(MAIN)!r}, default_timeout=60).run()\n"
        "for page in ('front', 'candidate'):\n"
        "    at.switch_page(f'pages/{page}.py'); at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "names = ('tensorflow', 'tf_keras', 'tflite_micro', 'onnxruntime', 'tf2onnx')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, state.WORKDIR_ENV: str(workdir)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout


def test_state_checks_names_and_paths(empty_workdir: Path) -> None:
    assert state.check_study_name(" demo-1.v2 ") == "demo-1.v2"
    for bad in ("../etc", "a/b", "", "x" * 101, "..", "with space"):
        with pytest.raises(Exception, match="study name must be 1-100 characters"):
            state.check_study_name(bad)
    (empty_workdir / "data").mkdir()
    (empty_workdir / "data" / "ok.npz").write_bytes(b"x")
    assert state.inside_workdir("data/ok.npz") == empty_workdir / "data" / "ok.npz"
    for outside in ("../x.npz", "/etc/passwd", "data/../../x"):
        with pytest.raises(Exception, match="inside the working folder"):
            state.inside_workdir(outside)
    assert state.safe_filename("../../evil name.npz") == "evil_name.npz"
    assert state.storage_url() == f"sqlite:///{empty_workdir / 'tinyfront.db'}"


# ----------------------------------------------------------------------------------------------- search page


def test_search_page_shows_target_budgets(empty_workdir: Path) -> None:
    at = _app()
    assert at.title[0].value == "Search"
    assert at.selectbox(key="f_target").value == "nucleo-l4r5zi"
    assert at.number_input(key="f_flash_nucleo-l4r5zi").value == 1792.0  # 2048 - 256
    assert at.number_input(key="f_sram_nucleo-l4r5zi").value == 544.0  # 640 - 96
    assert at.number_input(key="f_latency_nucleo-l4r5zi").value == 500.0
    at.selectbox(key="f_target").select("nucleo-f446re").run()
    assert at.number_input(key="f_flash_nucleo-f446re").value == 384.0
    assert at.number_input(key="f_sram_nucleo-f446re").value == 96.0
    assert at.number_input(key="f_latency_nucleo-f446re").value == 250.0
    assert at.multiselect(key="f_prec_tflm").value == ["float32", "int8", "int8_qat", "int16x8"]
    assert at.text_input(key="f_study_nucleo-f446re_mobilenet_v1").value == "nucleo-f446re-mobilenet_v1"
    assert "No study yet" in at.info[0].value


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"f_study_nucleo-l4r5zi_mobilenet_v1": "../escape"}, "study name must be 1-100 characters"),
        ({"f_flash_nucleo-l4r5zi": 5000.0}, "flash budget must be > 0 and <= 2048 KiB"),
        ({"f_sram_nucleo-l4r5zi": 0.0}, "SRAM budget must be > 0"),
        ({"f_wmin": 0.9, "f_wmax": 0.5}, "width_min (0.9) must be <= width_max (0.5)"),
        ({"f_prec_tflm": []}, "pick at least one precision"),
    ],
)
def test_search_page_refuses_bad_input(empty_workdir: Path, setup: dict[str, Any], message: str) -> None:
    at = _app()
    for key, value in setup.items():
        widget = at.get_by_key(key)
        widget.set_value(value)
    at.button(key="launch").click().run()
    assert not at.exception
    assert at.error, "expected an st.error"
    assert message in at.error[0].value
    assert not (empty_workdir / ".tinyfront" / "runs").exists() or not list(
        (empty_workdir / ".tinyfront" / "runs").iterdir()
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("f_trials", 0, "trials must be a whole number from 1 to 1,000, got 0"),
        ("f_trials", -5, "trials must be a whole number from 1 to 1,000, got -5"),
        ("f_trials", 100000, "trials must be a whole number from 1 to 1,000, got 100000"),
        ("f_workers", 0, "workers must be a whole number from 1 to 8, got 0"),
        ("f_epochs", 0, "epochs must be a whole number from 1 to 100, got 0"),
        ("f_finetune", -1, "fine-tune epochs must be a whole number from 0 to 100, got -1"),
        ("f_seed", -3, "seed must be a whole number from 0 to 2,147,483,647, got -3"),
        ("f_smax", 1.5, "sparsity max must be >= 0 and < 1, got 1.5"),
        ("f_wmin", 0.0, "width min must be > 0 and <= 4, got 0"),
    ],
)
def test_search_page_invalid_numbers_never_launch(empty_workdir: Path, key: str, value: float, message: str) -> None:
    """Issue 11 item 4: the typed value is taken (no silent clamp to the old one), its reason shown as text."""
    at = _app()
    at.number_input(key=key).set_value(value).run()
    assert at.number_input(key=key).value == value
    assert any(message in e.value for e in at.error), [e.value for e in at.error]  # visible before Launch
    at.button(key="launch").click().run()
    assert any("Nothing launched" in e.value for e in at.error)
    assert launcher.list_runs(empty_workdir) == []


def test_search_page_bad_dataset_keeps_the_form(empty_workdir: Path) -> None:
    """Issue 11 item 8: a dataset error is shown, the rest of the form (and Launch) stays, and nothing launches."""
    at = _app()
    at.radio(key="f_data_kind").set_value("path").run()
    at.text_input(key="f_data_path").input("missing.npz").run()
    assert any("nothing at 'missing.npz'" in e.value for e in at.error)
    assert at.number_input(key="f_trials").value == 20 and at.button(key="launch")
    at.button(key="launch").click().run()
    assert any("Nothing launched" in e.value for e in at.error)
    assert launcher.list_runs(empty_workdir) == []


def test_form_restored_from_a_run_record(empty_workdir: Path) -> None:
    form = forms.SearchForm(
        study="kept",
        target="nucleo-f446re",
        flash_budget_kb=300.0,
        sram_budget_kb=96.0,
        latency_budget_ms=250.0,
        precisions=("int8",),
        trials=7,
        epochs=3,
        finetune_epochs=0,
        width_max=0.5,
    )
    argv = forms.search_argv(form, state.storage_url())
    values = forms.widgets_from_argv(["python", "-m", "explorer.cli", *argv], forms.load_app_targets())
    assert values["f_target"] == "nucleo-f446re"
    assert values["f_study_nucleo-f446re_mobilenet_v1"] == "kept"
    assert (values["f_trials"], values["f_epochs"], values["f_finetune"]) == (7, 3, 0)
    assert values["f_flash_nucleo-f446re"] == 300.0 and values["f_prec_tflm"] == ["int8"]
    assert values["f_wmax"] == 0.5


def test_search_page_dataset_inputs(empty_workdir: Path) -> None:
    rng = np.random.default_rng(0)
    at = _app()
    at.radio(key="f_data_kind").set_value("path").run()
    at.text_input(key="f_data_path").input("../outside.npz").run()
    assert "must be inside the working folder" in at.error[0].value
    np.savez(empty_workdir / "flat.npz", x=rng.random((40, 5)).astype(np.float32), y=np.arange(40) % 2)
    at.text_input(key="f_data_path").input("flat.npz").run()
    assert "expected x with 3 dims (N, H, W) or 4 dims (N, H, W, C), found shape (40, 5)" in at.error[0].value
    good = {"x": rng.integers(0, 255, (60, 6, 6), dtype=np.uint8), "y": np.arange(60) % 3}
    np.savez(empty_workdir / "good.npz", **good)
    at.text_input(key="f_data_path").input("good.npz").run()
    assert not at.error
    assert "good.npz: 48 train / 12 val, input (6, 6, 1)" in at.caption[-1].value or any(
        "48 train / 12 val, input (6, 6, 1)" in c.value for c in at.caption
    )
    at.radio(key="f_data_kind").set_value("upload").run()
    at.file_uploader(key="f_upload").upload("../../broken name.npz", b"not a zip").run()
    assert "expected a readable .npz archive" in at.error[0].value
    assert not (empty_workdir / ".tinyfront" / "uploads" / "broken_name.npz").exists()
    buf = io.BytesIO()
    np.savez(buf, **good)
    at.file_uploader(key="f_upload").upload("my set.npz", buf.getvalue()).run()
    assert not at.error
    saved = empty_workdir / ".tinyfront" / "uploads" / "my_set.npz"
    assert saved.is_file() and saved.stat().st_size == len(buf.getvalue())
    assert any("Saved as `.tinyfront/uploads/my_set.npz`" in s.value for s in at.success)


def test_crashed_search_shows_log_excerpt(empty_workdir: Path) -> None:
    """A background search that fails is reported with its exit status and the log's last lines."""
    record = launcher.launch(empty_workdir, "broken", ["search", "--target", "no-such-board"], trials=2)
    deadline = time.monotonic() + 180  # generous: a loaded 2-core machine starts Python slowly
    while launcher.run_status(record).state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    status = launcher.run_status(record)
    assert (status.state, status.returncode) == ("failed", 1)
    assert "unknown target 'no-such-board'" in launcher.log_excerpt(record.log) or "no-such-board" in (
        launcher.log_excerpt(record.log)
    )
    at = _app(study="broken")
    errors = [e.value for e in at.error]
    assert any("exit status 1" in e and "no-such-board" in e for e in errors), errors


def test_launch_and_stop_a_real_search(empty_workdir: Path) -> None:
    """Launch from the page with valid input: a detached process group runs `tinyfront search`; Stop ends it."""
    at = _app()
    at.text_input(key="f_study_nucleo-l4r5zi_mobilenet_v1").input("stopme").run()
    at.number_input(key="f_trials").set_value(3)
    at.number_input(key="f_epochs").set_value(1)
    at.button(key="launch").click().run()
    assert not at.error, [e.value for e in at.error]
    record = launcher.read_run(empty_workdir, "stopme")
    assert record is not None and record.trials == 3
    assert record.command[-2:] == ["--objectives", "accuracy,latency_ms,flash_kb"] or "--objectives" in record.command
    assert os.getpgid(record.pid) == record.pid  # its own process group: survives the app's reruns
    assert at.session_state["study"] == "stopme"
    assert any(m.value == "**Status:** running" for m in at.markdown)
    status = launcher.stop(empty_workdir, record, wait=20)
    assert status.state == "stopped"
    assert not launcher._group_alive(record.pid)
    at.run()
    assert any("Stopped from the app" in w.value for w in at.warning)
    # Issue 11 item 5: a stopped search does not count on: no "Running", no ticking "Elapsed".
    metrics = {m.label: m.value for m in at.metric}
    assert "Running" not in metrics and "Interrupted" in metrics and "Elapsed" not in metrics
    took = metrics["Took"]
    time.sleep(1.5)
    at.run()
    assert {m.label: m.value for m in at.metric}["Took"] == took
    assert not any(m.value == "**Status:** running" for m in at.markdown)
    at.switch_page("pages/front.py")
    at.run()
    assert not any("A search is running" in c.value for c in at.caption)


# ----------------------------------------------------------------------------------------------- front page


def test_front_page_counts_and_what_if_budgets(workdir: Path) -> None:
    report = _report()
    expected = charts.front_info(report)
    at = _app("front")
    assert at.title[0].value == "Pareto front"
    text = _text(at)
    assert f"{N_TRIALS} finished · **{expected.feasible} within budgets** · {len(expected.front)} on the front" in text
    assert "2 failed" in text
    assert not [w for w in at.warning if "What-if budgets" in w.value]  # no override: no banner
    chart = at.get("plotly_chart")[0]
    spec = json.loads(chart.proto.spec)
    shown = sum(len(t["x"]) for t in spec["data"] if not t["name"].startswith(("knee", "open")))
    assert shown == N_TRIALS
    assert any(t["name"] == f"knee (trial {report.knee})" for t in spec["data"])
    # A typed budget (not a 3.58-3580 slider), defaulting to the study's own, one decimal, no exponent.
    box = at.number_input(key=state.budget_key(at.session_state, STUDY, "flash_kb"))
    assert box.value == pytest.approx(report.budgets["flash_kb"]) and box.proto.format == "%.1f"
    # Tighten flash to the 5th smallest value: the feasible count drops to what rejudge says.
    flashes = sorted(r.figures["flash_kb"]["value"] for r in report.trials if r.figures)
    limit = round(float(flashes[4]), 1)
    box.set_value(limit).run()
    tight = charts.front_info(charts.rejudge(report, {"flash_kb": limit}))
    assert tight.feasible < expected.feasible
    assert f"**{tight.feasible} within budgets**" in _text(at)
    assert at.session_state["budget_overrides"][STUDY] == {"flash_kb": pytest.approx(limit)}
    banner = [w.value for w in at.warning if "What-if budgets active" in w.value]
    assert banner and f"flash **{limit:,.1f} KiB** (study: {report.budgets['flash_kb']:,.1f} KiB)" in banner[0]
    # A refused value (0 KiB) says why and leaves the budget in force.
    at.number_input(key=state.budget_key(at.session_state, STUDY, "flash_kb")).set_value(0.0).run()
    assert any("flash budget must be > 0 KiB, got 0" in e.value for e in at.error)
    assert at.session_state["budget_overrides"][STUDY] == {"flash_kb": pytest.approx(limit)}
    assert at.number_input(key=state.budget_key(at.session_state, STUDY, "flash_kb")).value == pytest.approx(limit)
    at.selectbox(key="front_x").select("flash_kb").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "Flash (KiB)"
    assert "flash_kb" not in at.selectbox(key="front_y").options  # never the same figure on both axes


def test_one_budget_state_on_every_page_and_one_reset(workdir: Path) -> None:
    """Issue 11 item 1: a what-if flash budget is the one every page judges by, shown on each, reset once."""
    report = _report()
    over = max((r for r in report.trials if r.feasible), key=lambda r: r.figures["flash_kb"]["value"])
    limit = round(over.figures["flash_kb"]["value"] - 1.0, 1)  # this trial no longer fits
    at = _app("front")
    at.number_input(key=state.budget_key(at.session_state, STUDY, "flash_kb")).set_value(limit).run()
    at.session_state["trial"] = over.number
    for page in ("candidate", "export", "trials"):
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert any("What-if budgets active" in w.value for w in at.warning), page
        if page == "candidate":
            assert f"### Trial {over.number} ·" in _text(at) and ":red-badge[over budget]" in _text(at)
            figures = _frame(at, "figure")
            flash = figures[figures["figure"] == "flash"].iloc[0]
            assert (flash["budget"], flash["fits"]) == (f"{limit:,.1f}", "NO")
        elif page == "export":
            picker = at.selectbox(key="export_trial_choice")
            assert "(over budget)" in picker.format_func(over.number)
            assert any(f"Trial {over.number} is over budget (flash)" in w.value for w in at.warning)
        else:
            table = _frame(at, "trial")
            assert table.set_index("trial").loc[over.number, "verdict"] == "over flash"
    at.button(key="reset_budgets").click().run()
    assert at.session_state["budget_overrides"].get(STUDY, {}) == {}
    assert not [w for w in at.warning if "What-if budgets active" in w.value]
    at.switch_page("pages/front.py")
    at.run()
    assert at.number_input(key=state.budget_key(at.session_state, STUDY, "flash_kb")).value == pytest.approx(
        report.budgets["flash_kb"]
    )
    assert not [w for w in at.warning if "What-if budgets active" in w.value]


def test_front_axes_span_the_data_and_name_an_off_chart_budget(workdir: Path) -> None:
    report = _report()
    flashes = [r.figures["flash_kb"]["value"] for r in report.trials if r.figures]
    report = charts.rejudge(report, {"flash_kb": 10 * max(flashes)})  # a budget far beyond every trial
    info = charts.front_info(report, "flash_kb", "accuracy")
    assert info.x_range[0] <= min(flashes) and max(flashes) <= info.x_range[1] < 1.2 * max(flashes)
    assert info.off_chart == {"x": report.budgets["flash_kb"]}  # named at the edge, not squeezing the points
    fig = charts.front_figure(info)
    assert any("off the chart" in a.text for a in fig.layout.annotations)
    wide = charts.front_info(report, "flash_kb", "accuracy", to_budget=True, log_x=True)
    assert wide.x_range[1] >= report.budgets["flash_kb"] and wide.off_chart == {}
    assert charts.front_figure(wide).layout.xaxis.type == "log"
    with pytest.raises(Exception, match="two axes must show different figures"):
        charts.front_info(report, "accuracy", "accuracy")


def test_rejudge_matches_load_front(workdir: Path) -> None:
    from search.front import load_front

    ours, theirs = _report(), load_front(state.storage_url(), STUDY)
    assert ours.front == theirs.front
    assert ours.knee == theirs.knee
    assert ours.hypervolume == pytest.approx(theirs.hypervolume)
    assert [r.feasible for r in ours.trials] == [r.feasible for r in theirs.trials]


def test_front_open_button_goes_to_candidate(workdir: Path) -> None:
    report = _report()
    at = _app("front")
    at.selectbox(key="front_open_choice").select(report.front[-1]).run()
    at.button(key="front_open").click().run()
    assert at.session_state["trial"] == report.front[-1]
    assert at.title[0].value == "Candidate"


def test_all_trials_table_filters_and_opens(workdir: Path) -> None:
    report = _report()
    table = tables.trials_table(report)
    assert len(table) == len(report.trials) == N_TRIALS + 2
    by_trial = table.set_index("trial")
    failed = [r for r in report.trials if r.state == "FAIL"]
    assert all(by_trial.loc[r.number, "verdict"].startswith("FAIL: ") for r in failed)
    assert by_trial.loc[report.knee, "verdict"] == "★ knee (front)"
    assert set(tables.filter_trials(table, "front")["trial"]) == set(report.front) | set(report.within_noise)
    assert set(tables.filter_trials(table, "failed")["trial"]) == {r.number for r in failed}
    assert (
        "estimated ±" in by_trial.loc[report.knee, "kinds"]
        and "accuracy measured" in by_trial.loc[report.knee, "kinds"]
    )
    at = _app("trials")
    shown = _frame(at, "trial")
    assert len(shown) == N_TRIALS + 2 and shown["accuracy"].dtype.kind == "f"  # numbers: the columns sort
    at.radio(key="trials_show").set_value("failed").run()
    assert set(_frame(at, "trial")["trial"]) == {r.number for r in failed}
    at.radio(key="trials_show").set_value("all").run()
    at.text_input(key="trials_text").input("int16x8").run()
    assert set(_frame(at, "trial")["precision"]) == {"int16x8"}


def test_cli_front_all_marks_the_front(workdir: Path) -> None:
    from explorer.commands.front import render_report

    report = _report()
    text = render_report(report, all_trials=True)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial  width"))
    header, body = lines[start], lines[start + 2 : start + 2 + len(report.trials)]
    assert "flash (budget 1,792.0 KiB)" in header and header.rstrip().endswith("front")
    column = header.index("front", header.index("verdict"))
    marks = {int(line.split()[0]): line[column:].strip() for line in body}
    assert marks[report.knee] == "knee"
    assert all(marks[n] == "yes" for n in report.front if n != report.knee)
    assert "KB" not in text and "sizes in KiB (1 KiB = 1,024 bytes)" in text


def test_analysis_page_uses_optuna_plots(workdir: Path) -> None:
    from explorer.app import analysis

    study = open_study(state.storage_url(), STUDY)
    report = _report()
    info = analysis.analysis_info(study)
    assert info.objectives == tuple(report.objectives)
    assert info.reference == tuple(0.0 if n == "accuracy" else report.budgets[n] for n in report.objectives)
    assert {"width", "sparsity", "precision"} <= set(info.params) and info.can_rank_params
    hv = analysis.hypervolume_figure(study, info)
    last = float(hv.data[0].y[-1])
    # Optuna's volume shown as a fraction of the budget box = the front's hypervolume (same feasible set,
    # up to the points merged as equal within error).
    assert last == pytest.approx(report.hypervolume, rel=0.05)
    assert hv.layout.yaxis.title.text == "hypervolume (fraction of the budget box)"
    assert list(hv.data[0].y) == sorted(hv.data[0].y)  # a history never loses volume
    par = analysis.parallel_figure(study, info, "latency_ms")
    axes = list(par.layout.xaxis.ticktext or [])  # optuna 5 draws the axes as scatter lines with tick labels
    drawn = par.to_json()
    assert all(name in drawn for name in ("latency p50 (ms)", "width", "sparsity", "precision")), axes
    assert len(par.data) >= info.complete  # one line per finished trial (plus the axes)
    # Flash follows the width (bigger model, more bytes), not the sparsity (stored densely): the
    # importance says so. Bars are drawn ascending, so the last one is the most important.
    imp = analysis.importance_figure(study, info, "flash_kb")
    assert imp.data[0].y[-1] == "width" and imp.data[0].x[-1] > 0.5
    light = analysis.light_study(study)  # what the plots get: same values and constraints, no results
    first = next(t for t in study.trials if t.state.name == "COMPLETE")
    assert (light.trials[0].values, light.trials[0].constraints) == (first.values, first.constraints)
    assert light.trials[0].user_attrs == {} and len(light.trials) == info.complete
    at = _app("analysis")
    titles = [h.value for h in at.subheader]
    assert titles == ["Hypervolume over trials", "Parameter importance", "Parallel coordinates"]
    assert len(at.get("plotly_chart")) == 3


def test_deep_link_opens_the_same_candidate(workdir: Path) -> None:
    from explorer.app.state import link_params

    assert link_params({"study": "../x", "trial": "3; drop", "page": "evil"}) == {}
    assert link_params({"study": STUDY, "trial": "7", "page": "Candidate"}) == {
        "study": STUDY,
        "trial": 7,
        "page": "candidate",
    }
    report = _report()
    number = report.front[-1]
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.query_params["study"] = STUDY
    at.query_params["trial"] = str(number)
    at.query_params["page"] = "candidate"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["study"] == STUDY and at.session_state["trial"] == number
    assert at.title[0].value == "Candidate"
    assert f"### Trial {number} ·" in _text(at)


# ----------------------------------------------------------------------------------------------- candidate page


def test_candidate_page_figures_and_compare(workdir: Path) -> None:
    report = _report()
    knee = report.row(report.knee)
    at = _app("candidate")
    assert at.title[0].value == "Candidate"
    assert at.session_state["trial"] == report.knee  # the knee opens by default
    assert f"### Trial {report.knee} ·" in _text(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy (deployed)"] == f"{knee.figures['accuracy']['value'] * 100:.2f} %"
    assert metrics["Before conversion"] == f"{knee.figures['keras_accuracy']['value'] * 100:.2f} %"
    assert metrics["Latency p50"] == f"{knee.figures['latency_ms']['value']:,.2f} ms"
    assert metrics["Latency p99"] == "n/a"
    figures = _frame(at, "figure")
    flash = figures[figures["figure"] == "flash"].iloc[0]
    assert flash["kind"] == "estimated ±2%"
    assert flash["budget"] == "1,792.0" and flash["fits"] == "yes"
    assert figures[figures["figure"] == "accuracy (deployed artifact)"].iloc[0]["kind"] == "measured"
    layers = _frame(at, "#")
    assert list(layers["op"]) == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    for share in ("MACs share", "weight share", "latency share"):
        assert layers[share].sum() == pytest.approx(1.0)
    assert layers["est. latency ms"].notna().all()  # an MCU target: the per-layer cost model
    assert any("flash saved on the board: **0 B**" in m.value for m in at.markdown)
    others = [n for n in report.front if n != report.knee][:2]
    at.multiselect(key="compare_choice").set_value([report.knee, *others]).run()
    table = at.dataframe[-1].value
    assert list(table.columns) == [f"trial {n}" for n in [report.knee, *others]]
    assert table.loc["precision", f"trial {report.knee}"] == knee.spec["precision"]
    differ = tables.differing_rows(table)
    assert "flash" in differ or "accuracy (deployed artifact)" in differ
    assert all(table.loc[name].nunique() == 1 for name in table.index if name not in differ)
    assert any(f"the {len(differ)} rows where the candidates differ" in c.value for c in at.caption)


def test_layers_table_shows_every_layer_with_shares() -> None:
    layers = [
        {"index": i, "op": "CONV_2D", "macs": 1000 * (i + 1), "weight_params": 10, "weight_bytes": 10 * (i + 1)}
        for i in range(12)
    ]
    mcu = {"runtime": "tflm", "core": "cortex-m4", "clock_mhz": 80.0}
    table = tables.layers_table(layers, mcu)
    assert len(table) == 12  # every layer, not the first 6
    assert table["MACs share"].iloc[-1] == pytest.approx(12 / 78)
    assert table["weight share"].sum() == pytest.approx(1.0)
    assert (table["est. latency ms"] > 0).all() and table["latency share"].sum() == pytest.approx(1.0)
    linux = tables.layers_table(layers, {"runtime": "onnxruntime", "core": "cortex-a72", "clock_mhz": 1500.0})
    assert linux["est. latency ms"].isna().all()


def test_candidate_page_with_no_study(empty_workdir: Path) -> None:
    at = _app("candidate")
    assert "No study to show yet" in at.info[0].value


# ----------------------------------------------------------------------------------------------- export page


def test_export_page_refuses_trial_without_model(workdir: Path) -> None:
    report = _report()
    at = _app("export", trial=report.knee)
    assert at.error, "a trial without model.tflite must end in st.error"
    assert f"cannot build the tflm bundle of trial {report.knee}" in at.error[0].value
    assert not at.download_button


def test_export_page_lists_bundle_and_downloads(workdir: Path) -> None:
    """With a bundle already built for the trial, the page lists its files and offers it for download."""
    from explorer.app import exports

    report = _report()
    trial = report.front[0]
    path = exports.bundle_path(STUDY, trial, "onnx")
    files = {"model.onnx": b"\x08\x07" * 500, "labels.txt": b"0\n1\n", "README.md": b"# bundle\n"}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    at = _app("export", trial=trial)
    at.radio(key="export_format").set_value("onnx").run()
    assert not at.error, [e.value for e in at.error]
    listed = _frame(at, "file")
    assert dict(zip(listed["file"], listed["bytes"], strict=True)) == {k: len(v) for k, v in files.items()}
    assert f"**{path.name}**: 3 files" in _text(at)
    assert at.download_button[0].proto.label.startswith("Download ONNX bundle")


def test_export_page_shows_device_verification(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TFLM bundle's build status comes from its metadata.json; the build is offered only where it can run."""
    from explorer.app import exports

    monkeypatch.delenv("TINYFRONT_TFLM_DIR", raising=False)
    report = _report()
    trial = report.front[0]

    def write(path: Path, verification: dict) -> None:
        meta = {"bundle": {"verification": verification}}
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("model.tflite", b"\x00" * 64)
            zf.writestr("metadata.json", json.dumps(meta))

    write(exports.bundle_path(STUDY, trial, "tflm"), {"status": "not built or run for this model where it was made"})
    at = _app("export", trial=trial)
    assert not at.error, [e.value for e in at.error]
    text = "\n".join(c.value for c in at.caption)
    assert "not built or run for this model where it was made" in text
    assert "Building here is not possible: set TINYFRONT_TFLM_DIR" in text
    assert not [b for b in at.button if b.key == "build_verify"]

    sentence = "built and verified: bit-exact on mps2-an386 (QEMU, cortex-m4, CMSIS-NN)"
    built = {"status": sentence, "board": "mps2-an386", "arena_size": 7088, "arena_used": 6900, "compiler_flags": "-O2"}
    write(exports.bundle_path(STUDY, trial, "tflm", built=True), built)
    at = _app("export", trial=trial)
    assert [s.value for s in at.success] == [sentence]
    assert "arena 7,088 B stated, 6,900 B used on mps2-an386" in "\n".join(c.value for c in at.caption)
    assert any(b.proto.label.startswith("Download the built and verified bundle") for b in at.download_button)


def test_tables_label_provenance() -> None:
    figs = {
        "latency_ms": {"value": 12.345, "unit": "ms", "kind": "estimated", "method": "m", "error_pct": 15.0},
        "accuracy": {"value": 0.9512, "unit": "fraction", "kind": "measured", "method": "m", "error_pct": None},
    }
    table = tables.figures_table(figs, {"latency_ms": 10.0})
    assert list(table["value"]) == ["95.12 %", "12.35 ms"]
    assert list(table["kind"]) == ["measured", "estimated ±15%"]
    assert list(table["fits"]) == ["", "NO"]
    bars = charts.budget_bars(figs, {"latency_ms": 10.0})
    assert [(b.budget, round(b.share, 4), b.fits) for b in bars] == [("latency", 1.2345, False)]


def test_log_excerpt_drops_tensorflow_noise_and_progress_frames(tmp_path: Path) -> None:
    log = tmp_path / "search.log"
    log.write_text(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "E0000 00:00:1732612345.123456   123 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
        "I0000 00:00:1732612345.2 cpu_feature_guard.cc:210] This TensorFlow binary is optimized to use AVX2\n"
        "2026-11-26 11:00:00.0: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n"
        "WARNING:absl:Compiled the loaded model, but the compiled metrics have yet to be built.\n"
        "trial 0: training\n"
        "epoch 1/3:  10%|#         | 1/10\repoch 1/3:  50%|#####     | 5/10\repoch 1/3: 100%|##########| 10/10\n"
        "trial 0: accuracy 91.2 % (measured)\n"
    )
    assert launcher.log_excerpt(log).splitlines() == [
        "trial 0: training",
        "epoch 1/3: 100%|##########| 10/10",
        "trial 0: accuracy 91.2 % (measured)",
    ]
