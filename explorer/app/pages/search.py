"""Search page: pick target, budgets, dataset, family, space and objectives; launch, watch and stop a search."""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.app import forms, launcher, state, ui
from search.errors import TinyfrontError
from search.result import OBJECTIVES
from search.study import DEFAULT_OBJECTIVES, SAMPLERS

ui.setup()
st.title("Search")
ui.what_if_banner()
st.caption(
    "Width x sparsity x precision of a small CNN against a board's flash, SRAM and latency budgets. "
    "Every candidate is trained, converted and measured for real, in a background process that keeps "
    "running when you close the browser."
)

DATA_CHOICES = {
    "demo": "Demo: scikit-learn digits (1,797 8x8 images, 10 classes)",
    "upload": "Upload a .npz (x, y or x_train, y_train, x_val, y_val)",
    "path": "A .npz file or image folder inside the working folder",
}


def _kw(key: str, **defaults: Any) -> dict[str, Any]:
    """A widget's default, only when the session does not hold its value already (restored after a reload)."""
    return {} if key in st.session_state else defaults


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def show_run(study: str) -> None:
    """Progress of ``study``'s background search (refreshing itself while it runs), and its Stop button."""
    workdir = state.workdir()
    record = launcher.read_run(workdir, study)
    status = launcher.run_status(record) if record else None
    running = status is not None and status.state == "running"

    @st.fragment(run_every=2.0 if running else None)
    def panel() -> None:
        rec = launcher.read_run(workdir, study)
        now = launcher.run_status(rec) if rec else None
        with ui.boundary():
            prog = launcher.study_progress(state.storage_url(), study, rec)
        if running and (now is None or now.state != "running"):
            st.rerun(scope="app")
        is_running = now is not None and now.state == "running"
        st.subheader(f"Study `{study}`")
        st.markdown(f"**Status:** {now.state if now else 'no background run from this app'}")
        if prog.total:
            st.progress(min(prog.done / prog.total, 1.0), text=f"{prog.done} of {prog.total} trials done")
        cols = st.columns(4)
        cols[0].metric("Done", prog.done)
        # A stopped search leaves its trials RUNNING in the storage until a resume fails them by heartbeat.
        if is_running:
            cols[1].metric("Running", prog.running)
        else:
            cols[1].metric("Interrupted", prog.running, help="left unfinished; re-run when the search is resumed")
        cols[2].metric("Failed", prog.failed)
        cols[3].metric("Feasible", prog.feasible)
        times = st.columns(2)
        times[0].metric("Elapsed" if is_running else "Took", _fmt_seconds(prog.elapsed if rec else None))
        times[1].metric("ETA", _fmt_seconds(prog.eta) if is_running else "-")
        if rec is None or now is None:
            return
        if now.state == "running":
            if st.button("Stop search", key="stop_search", type="secondary", icon=":material/stop_circle:"):
                with st.spinner("Stopping (finished trials stay in the storage)..."):
                    launcher.stop(workdir, rec)
                st.rerun(scope="app")
        elif now.state == "failed":
            st.error(
                f"The search stopped with exit status {now.returncode}. Last lines of its log "
                f"(`{rec.log}`):\n\n```\n{launcher.log_excerpt(rec.log)}\n```"
            )
        elif now.state == "stopped":
            st.warning("Stopped from the app. Finished trials are kept; launch again with the same name to resume.")
        else:
            st.success("Search finished.")
            st.page_link(ui.PAGES["front"], label="Open the Pareto front", icon=":material/scatter_plot:")
        with st.expander("Log (TensorFlow start-up noise and progress-bar redraws left out)"):
            st.code(launcher.log_excerpt(rec.log, lines=40), language=None)

    panel()


class BadDataset(str):
    """The dataset input is invalid: the reason (already shown as st.error); nothing may launch."""


def dataset_choice() -> str | None:
    """The dataset the form uses: None for the demo, a path inside the working folder, or :class:`BadDataset`.

    A bad dataset shows its reason and leaves the rest of the page (the form, a running search's
    Stop button) in place.
    """
    kind = st.radio("Dataset", list(DATA_CHOICES), format_func=DATA_CHOICES.get, key="f_data_kind")
    if kind == "demo":
        return None
    if kind == "upload":
        upload = st.file_uploader("Dataset (.npz)", type=["npz"], key="f_upload")
        if upload is None:
            st.info("Upload a .npz, or pick the demo.")
            return None
        try:
            path = forms.save_upload(upload.name, upload.getvalue())
        except TinyfrontError as exc:
            st.error(str(exc), icon=":material/error:")
            return BadDataset(str(exc))
        st.success(f"Saved as `{path.relative_to(state.workdir())}` and checked.")
        return str(path)
    text = st.text_input("Path (relative to the working folder)", key="f_data_path", placeholder="data/my_set.npz")
    if not text.strip():
        return None
    try:
        path = state.inside_workdir(text)
        info = forms.check_dataset(path)
    except TinyfrontError as exc:
        st.error(str(exc), icon=":material/error:")
        return BadDataset(str(exc))
    names = ", ".join(info.class_names[:12]) + (
        f" and {len(info.class_names) - 12} more" if len(info.class_names) > 12 else ""
    )
    st.caption(
        f"{info.name}: {len(info.x_train)} train / {len(info.x_val)} val, input {info.input_shape}; "
        f"{len(info.class_names)} classes: {names}"
    )
    return str(path)


def search_form() -> None:
    from search.candidate import supported_precisions
    from search.families import FAMILIES

    with ui.boundary():
        targets = forms.load_app_targets()
    names = sorted(targets)
    default = "nucleo-l4r5zi" if "nucleo-l4r5zi" in names else names[0]
    with st.container(border=True):
        st.markdown("**Target and budgets**")
        name = st.selectbox("Target", names, key="f_target", **_kw("f_target", index=names.index(default)))
        target = targets[name]
        st.caption(
            f"{target.description} · {target.core} @ {target.clock_mhz:g} MHz · flash {target.flash_kb:,g} KiB · "
            f"SRAM {target.sram_kb:,g} KiB · runtime {target.runtime}"
        )
        cols = st.columns(3)
        flash = cols[0].number_input(
            "Flash budget (KiB)",
            step=16.0,
            key=f"f_flash_{name}",
            **_kw(f"f_flash_{name}", value=float(target.flash_budget_kb)),
            format="%.1f",
        )
        sram = cols[1].number_input(
            "SRAM budget (KiB)",
            step=8.0,
            key=f"f_sram_{name}",
            **_kw(f"f_sram_{name}", value=float(target.sram_budget_kb)),
            format="%.1f",
        )
        latency = cols[2].number_input(
            "Latency budget (ms)",
            step=10.0,
            key=f"f_latency_{name}",
            **_kw(f"f_latency_{name}", value=float(target.latency_budget_ms)),
            format="%.1f",
        )
    with st.container(border=True):
        st.markdown("**Data and model**")
        data = dataset_choice()
        family = st.selectbox("Model family", list(FAMILIES), key="f_family")
    with st.container(border=True):
        st.markdown("**Search space and objectives**")
        cols = st.columns(3)
        # No min/max on the inputs: a bounded input silently keeps its old value when a typed one is out
        # of range; here every typed value is taken and checked, and the reason is shown as text.
        w_min = cols[0].number_input("Width min", step=0.05, key="f_wmin", **_kw("f_wmin", value=0.25))
        w_max = cols[1].number_input("Width max", step=0.05, key="f_wmax", **_kw("f_wmax", value=1.0))
        w_step = cols[2].number_input(
            "Width step (0 = continuous)", step=0.05, key="f_wstep", **_kw("f_wstep", value=0.25)
        )
        cols = st.columns(3)
        s_min = cols[0].number_input("Sparsity min", step=0.05, key="f_smin", **_kw("f_smin", value=0.0))
        s_max = cols[1].number_input("Sparsity max", step=0.05, key="f_smax", **_kw("f_smax", value=0.8))
        s_step = cols[2].number_input(
            "Sparsity step (0 = continuous)", step=0.05, key="f_sstep", **_kw("f_sstep", value=0.1)
        )
        supported = list(supported_precisions(target))
        precisions = st.multiselect(
            "Precisions",
            supported,
            key=f"f_prec_{target.runtime}",
            **_kw(f"f_prec_{target.runtime}", default=supported),
        )
        objectives = st.multiselect(
            "Objectives", list(OBJECTIVES), key="f_obj", **_kw("f_obj", default=list(DEFAULT_OBJECTIVES))
        )
    with st.container(border=True):
        st.markdown("**Run**")
        run_cols = st.columns(4)
        trials = run_cols[0].number_input("Trials", step=1, key="f_trials", **_kw("f_trials", value=20))
        workers = run_cols[1].number_input("Workers", step=1, key="f_workers", **_kw("f_workers", value=1))
        epochs = run_cols[2].number_input("Epochs", step=1, key="f_epochs", **_kw("f_epochs", value=5))
        finetune = run_cols[3].number_input("Fine-tune epochs", step=1, key="f_finetune", **_kw("f_finetune", value=2))
        cols = st.columns(3)
        sampler = cols[0].selectbox("Sampler", list(SAMPLERS), key="f_sampler")
        seed = cols[1].number_input("Seed", step=1, key="f_seed", **_kw("f_seed", value=0))
        study = cols[2].text_input(
            "Study name", key=f"f_study_{name}_{family}", **_kw(f"f_study_{name}_{family}", value=f"{name}-{family}")
        )
        problems = forms.number_problems(
            {
                "trials": trials,
                "workers": workers,
                "epochs": epochs,
                "fine-tune epochs": finetune,
                "seed": seed,
                "width min": w_min,
                "width max": w_max,
                "width step": w_step,
                "sparsity min": s_min,
                "sparsity max": s_max,
                "sparsity step": s_step,
            }
        )
        if isinstance(data, BadDataset):
            problems.append(f"the dataset: {data}")
        for problem in problems:
            st.error(problem, icon=":material/error:")
        if not problems:
            show_estimate(study.strip(), int(trials), int(workers))
        launch = st.button("Launch search", type="primary", key="launch", icon=":material/rocket_launch:")
    if not launch:
        return
    if problems:
        st.error("Nothing launched: fix the values above first.", icon=":material/block:")
        return
    form = forms.SearchForm(
        study=study,
        target=name,
        flash_budget_kb=float(flash),
        sram_budget_kb=float(sram),
        latency_budget_ms=float(latency),
        data=data,
        family=family,
        width_min=float(w_min),
        width_max=float(w_max),
        width_step=float(w_step),
        sparsity_min=float(s_min),
        sparsity_max=float(s_max),
        sparsity_step=float(s_step),
        precisions=tuple(precisions),
        objectives=tuple(objectives),
        trials=int(trials),
        workers=int(workers),
        epochs=int(epochs),
        finetune_epochs=int(finetune),
        sampler=str(sampler),
        seed=int(seed),
    )
    try:
        storage = state.storage_url()
        argv = forms.search_argv(form, storage)
        done = launcher.study_progress(storage, form.study.strip(), None, total=form.trials).done
        launcher.launch(
            state.workdir(), form.study.strip(), argv, trials=form.trials, done_at_start=done, storage=storage
        )
    except TinyfrontError as exc:
        st.error(f"Nothing launched: {exc}", icon=":material/error:")
        return
    st.session_state["study"] = form.study.strip()
    st.session_state["trial"] = None
    st.rerun()


def show_estimate(study: str, trials: int, workers: int) -> None:
    """How long the search should take, from finished trials in this storage (never a made-up figure)."""
    try:
        guess = forms.duration_estimate(state.storage_url(), study, trials, workers)
    except TinyfrontError:
        guess = None
    if guess is None:
        st.caption("Duration: estimated once a first trial has finished in this working folder.")
    else:
        seconds, source = guess
        st.caption(f"Estimated duration: about {_fmt_seconds(seconds)} ({source}; estimated, not measured).")


def restore_form(study: str | None) -> None:
    """After a reload, put the running search's settings back in the form (once per browser session)."""
    if st.session_state.get("_form_restored") or not study:
        return
    st.session_state["_form_restored"] = True
    record = launcher.read_run(state.workdir(), study)
    if record is None or launcher.run_status(record).state != "running":
        return
    try:
        values = forms.widgets_from_argv(record.command, forms.load_app_targets())
    except (TinyfrontError, ValueError):
        return
    for key, value in values.items():
        st.session_state.setdefault(key, value)


chosen = st.session_state.get("study")
restore_form(str(chosen) if chosen else None)
running_now = bool(chosen) and ui.run_state(str(chosen)) == "running"
if running_now:
    # The progress sits on top where the user is after Launch; the form folds away below it.
    show_run(str(chosen))
    with st.expander("New search (another study, or this one resumed after it stops)", expanded=False):
        search_form()
else:
    left, right = st.columns([3, 2], gap="large")
    with right:  # drawn first: a problem in the form never hides the study's status
        if chosen:
            show_run(str(chosen))
        else:
            st.info("No study yet. Fill in the form and launch: a search with the defaults starts in one click.")
    with left:
        st.subheader("New search")
        search_form()
