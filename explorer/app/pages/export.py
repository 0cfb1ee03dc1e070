"""Export page: build and download the TFLite Micro or ONNX Runtime bundle of the chosen trial."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.app import exports, state, ui

ui.setup()
st.title("Export")
ui.what_if_banner()
study = ui.require_study()
report = ui.report_or_wait(study)  # judged against the session's budgets, as on every page
if report is None:
    st.stop()
number = ui.trial_picker(report, key="export_trial_choice")
if number is None:
    st.stop()
row = report.row(number)
runtime = report.target["runtime"]
default_fmt = "onnx" if runtime == "onnxruntime" else "tflm"
fmt = st.radio(
    "Bundle",
    list(exports.FORMATS),
    index=list(exports.FORMATS).index(default_fmt),
    format_func=exports.FORMATS.get,
    key="export_format",
    horizontal=True,
)
if fmt == "tflm" and runtime != "tflm":
    st.caption(f"The study's target runs {runtime}; a TFLite Micro bundle is for microcontrollers.")
if not row.feasible:
    over = ", ".join(b for b, ok in row.verdicts.items() if not ok)
    st.warning(
        f"Trial {number} is over budget ({over}) on {report.target['name']}: check the Candidate page before deploying."
    )
with ui.boundary(), st.spinner(f"Building the {fmt} bundle of trial {number} (real conversion, can take a minute)..."):
    root = ui.cached_study(study).user_attrs.get("artifacts_root")
    path = exports.build_bundle(state.storage_url(), study, number, fmt, row.artifacts_dir, artifacts_root=root)
    files = exports.bundle_files(path)
size = path.stat().st_size
st.markdown(
    f"**{path.name}**: {len(files)} files, {size / 1024:,.1f} KiB zipped, "
    f"{sum(files.values()) / 1024:,.1f} KiB unzipped"
)
st.download_button(
    f"Download {fmt.upper()} bundle ({size / 1024:,.0f} KiB)",
    data=path.read_bytes(),
    file_name=f"{study}-trial-{number}-{fmt}.zip",
    mime="application/zip",
    type="primary",
    icon=":material/download:",
    key="download_bundle",
)
table = pd.DataFrame([{"file": name, "bytes": n} for name, n in sorted(files.items())])
st.dataframe(table, hide_index=True, width="stretch", height=36 * (len(table) + 1) + 2, key="bundle_files")

# The bundle's build and verification on the device's own kernels (cross-compiled, run under QEMU).
with st.container(border=True, key="bundle_verification"):
    st.markdown("**Build and verification on the device's kernels**")
    if fmt != "tflm":
        st.caption("ONNX bundles run on Linux boards with ONNX Runtime: nothing to cross-compile.")
    else:
        record = exports.verification(path)
        built_path = exports.bundle_path(study, number, fmt, built=True)
        built = exports.verification(built_path) if built_path.is_file() else {}
        if built.get("board"):
            st.success(str(built.get("status")))
            st.caption(
                f"arena {built.get('arena_size', 0):,} B stated, {built.get('arena_used', 0):,} B used on "
                f"{built.get('board')}; flags `{built.get('compiler_flags', '')}`"
            )
            st.download_button(
                "Download the built and verified bundle (prebuilt library + QEMU image)",
                data=built_path.read_bytes(),
                file_name=f"{study}-trial-{number}-tflm-built.zip",
                mime="application/zip",
                icon=":material/verified:",
                key="download_built_bundle",
            )
        else:
            st.caption(str(record.get("status") or "not built or run for this model where it was made"))
            reason = exports.build_unavailable()
            if reason is not None:
                st.caption(f"Building here is not possible: {reason}.")
            elif st.button("Build for the target's core and verify in QEMU", key="build_verify"):
                with (
                    ui.boundary(),
                    st.spinner("Cross-compiling TFLite Micro + CMSIS-NN and running the image in QEMU..."),
                ):
                    exports.build_bundle(
                        state.storage_url(), study, number, fmt, row.artifacts_dir, artifacts_root=root, build=True
                    )
                    st.rerun()
