"""Search page: pick target, budgets, dataset, family, space and objectives; launch, watch and stop a search."""

from __future__ import annotations

import streamlit as st

from explorer.app import forms, launcher, state, ui
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
        st.subheader(f"Study `{study}`")
        st.markdown(f"**Status:** {now.state if now else 'no background run from this app'}")
        if prog.total:
            st.progress(min(prog.done / prog.total, 1.0), text=f"{prog.done} of {prog.total} trials done")
        cols = st.columns(4)
        cols[0].metric("Done", prog.done)
        cols[1].metric("Running", prog.running)
        cols[2].metric("Failed", prog.failed)
        cols[3].metric("Feasible", prog.feasible)
        times = st.columns(2)
        times[0].metric("Elapsed", _fmt_seconds(prog.elapsed if rec else None))
        times[1].metric("ETA", _fmt_seconds(prog.eta) if now and now.state == "running" else "-")
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
        with st.expander("Log"):
            st.code(launcher.log_excerpt(rec.log, lines=40), language=None)

    panel()


def dataset_choice() -> str | None:
    """The dataset the form uses: None for the demo, else a path inside the working folder."""
    kind = st.radio("Dataset", list(DATA_CHOICES), format_func=DATA_CHOICES.get, key="f_data_kind")
    if kind == "demo":
        return None
    if kind == "upload":
        upload = st.file_uploader("Dataset (.npz)", type=["npz"], key="f_upload")
        if upload is None:
            st.info("Upload a .npz, or pick the demo.")
            return None
        with ui.boundary():
            path = forms.save_upload(upload.name, upload.getvalue())
        st.success(f"Saved as `{path.relative_to(state.workdir())}` and checked.")
        return str(path)
    text = st.text_input("Path (relative to the working folder)", key="f_data_path", placeholder="data/my_set.npz")
    if not text.strip():
        return None
    with ui.boundary():
        path = state.inside_workdir(text)
        info = forms.check_dataset(path)
    st.caption(f"{info.name}: {len(info.x_train)} train / {len(info.x_val)} val, input {info.input_shape}")
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
        name = st.selectbox("Target", names, index=names.index(default), key="f_target")
        target = targets[name]
        st.caption(
            f"{target.description} · {target.core} @ {target.clock_mhz:g} MHz · flash {target.flash_kb:,g} KiB · "
            f"SRAM {target.sram_kb:,g} KiB · runtime {target.runtime}"
        )
        cols = st.columns(3)
        flash = cols[0].number_input(
            "Flash budget (KiB)", value=float(target.flash_budget_kb), step=16.0, key=f"f_flash_{name}"
        )
        sram = cols[1].number_input(
            "SRAM budget (KiB)", value=float(target.sram_budget_kb), step=8.0, key=f"f_sram_{name}"
        )
        latency = cols[2].number_input(
            "Latency budget (ms)", value=float(target.latency_budget_ms), step=10.0, key=f"f_latency_{name}"
        )
    with st.container(border=True):
        st.markdown("**Data and model**")
        data = dataset_choice()
        family = st.selectbox("Model family", list(FAMILIES), key="f_family")
    with st.container(border=True):
        st.markdown("**Search space and objectives**")
        cols = st.columns(3)
        w_min = cols[0].number_input("Width min", 0.05, 2.0, 0.25, 0.05, key="f_wmin")
        w_max = cols[1].number_input("Width max", 0.05, 2.0, 1.0, 0.05, key="f_wmax")
        w_step = cols[2].number_input("Width step (0 = continuous)", 0.0, 2.0, 0.25, 0.05, key="f_wstep")
        cols = st.columns(3)
        s_min = cols[0].number_input("Sparsity min", 0.0, 0.95, 0.0, 0.05, key="f_smin")
        s_max = cols[1].number_input("Sparsity max", 0.0, 0.95, 0.8, 0.05, key="f_smax")
        s_step = cols[2].number_input("Sparsity step (0 = continuous)", 0.0, 0.95, 0.1, 0.05, key="f_sstep")
        supported = list(supported_precisions(target))
        precisions = st.multiselect("Precisions", supported, default=supported, key=f"f_prec_{target.runtime}")
        objectives = st.multiselect("Objectives", list(OBJECTIVES), default=list(DEFAULT_OBJECTIVES), key="f_obj")
    with st.container(border=True):
        st.markdown("**Run**")
        run_cols = st.columns(4)
        trials = run_cols[0].number_input("Trials", 1, forms.MAX_TRIALS, 20, key="f_trials")
        workers = run_cols[1].number_input("Workers", 1, forms.MAX_WORKERS, 1, key="f_workers")
        epochs = run_cols[2].number_input("Epochs", 1, forms.MAX_EPOCHS, 5, key="f_epochs")
        finetune = run_cols[3].number_input("Fine-tune epochs", 0, forms.MAX_EPOCHS, 2, key="f_finetune")
        cols = st.columns(3)
        sampler = cols[0].selectbox("Sampler", list(SAMPLERS), key="f_sampler")
        seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, key="f_seed")
        study = cols[2].text_input("Study name", value=f"{name}-{family}", key=f"f_study_{name}_{family}")
        launch = st.button("Launch search", type="primary", key="launch", icon=":material/rocket_launch:")
    if not launch:
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
    with ui.boundary():
        storage = state.storage_url()
        argv = forms.search_argv(form, storage)
        done = launcher.study_progress(storage, form.study.strip(), None, total=form.trials).done
        launcher.launch(state.workdir(), form.study.strip(), argv, trials=form.trials, done_at_start=done)
    st.session_state["study"] = form.study.strip()
    st.session_state["trial"] = None
    st.rerun()


left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("New search")
    search_form()
with right:
    chosen = st.session_state.get("study")
    if chosen:
        show_run(str(chosen))
    else:
        st.info("No study yet. Fill in the form and launch: a search with the defaults starts in one click.")
