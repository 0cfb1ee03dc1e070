"""Entry points that pick the artifacts: a user-brought .tflite, or a trial of an Optuna study."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from firmware_export._bundle import BundleInfo, Candidate, check_output, read_samples
from firmware_export.locate import trial_artifacts
from firmware_export.onnx_bundle import export_onnx_bundle, write_onnx_bundle
from firmware_export.tflm import BuildRequest, export_tflm_bundle, write_tflm_bundle
from search.errors import ExportError, MeasurementError
from search.targets import Target

FORMATS: tuple[str, ...] = ("tflm", "onnx")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown bundle format '{fmt}'; expected one of: {', '.join(FORMATS)}")


def export_tflite_file(
    tflite_path: Path,
    out_zip: Path,
    *,
    fmt: str = "tflm",
    target: Target | None = None,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    samples: Path | None = None,
    build: BuildRequest | None = None,
) -> BundleInfo:
    """Bundle a .tflite the user brings.

    ``samples`` is an optional .npz with ``x`` (float inputs as fed to the model) and ``y``
    (labels); without it the test input is seeded noise and the README says so. With a TFLite
    Micro ``target``, the bundle carries the figures ``tinyfront measure`` gives (flash, SRAM,
    arena, latency; each labelled measured or estimated). ``build`` (tflm only): build for the
    target's core and verify the image in QEMU before the zip is written (see BuildRequest).
    """
    _check_format(fmt)
    out = check_output(out_zip, force)
    path = Path(tflite_path)
    if not path.is_file():
        raise ExportError(f"model file {path} does not exist")
    model = path.read_bytes()
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise ExportError(f"{path} is not a .tflite flatbuffer (no 'TFL3' identifier at byte 4)")
    result: dict[str, object] = {
        "spec": {"source": "user-provided model", "file": path.name},
        "target": target.to_dict() if target is not None else None,
        "dataset": {"class_names": list(class_names) if class_names else None},
        "figures": _figures(model, target) if fmt == "tflm" else {},
    }
    from search import __version__

    result["tinyfront_version"] = __version__
    cand = Candidate(source=str(path), result=result, tflite=model)
    if samples is not None:
        cand.x_val, cand.y_val = read_samples(Path(samples))
    if fmt == "tflm":
        return write_tflm_bundle(cand, out, target, build)
    _no_build(build)
    return write_onnx_bundle(cand, out)


def _no_build(build: BuildRequest | None) -> None:
    if build is not None:
        raise ExportError("--build builds TFLite Micro bundles; it does not apply to --format onnx")


def _figures(model: bytes, target: Target | None) -> dict[str, object]:
    """What ``tinyfront measure`` reports for ``model`` on an MCU ``target`` ({} without one)."""
    if target is None or not target.is_mcu:
        return {}
    from search.measure import measure_tflite

    try:
        m = measure_tflite(model, target)
    except MeasurementError as exc:
        raise ExportError(f"cannot measure the model for target '{target.name}': {exc}") from None
    arena = m.arena
    return {
        "flash_kb": m.flash["total"].to_dict(),
        "model_flash_kb": m.flash["model"].to_dict(),
        "runtime_code_kb": m.flash["runtime_code"].to_dict(),
        "sram_kb": m.sram.to_dict(),
        "arena_bytes": {
            "value": float(arena.arena_bytes),
            "unit": "B",
            "kind": "measured",
            "method": "smallest tensor arena that allocates in the TFLite Micro interpreter on this host (bisected)",
            "error_pct": None,
        },
        "latency_ms": m.latency.to_dict(),
    }


def export_trial(
    storage: str,
    study: str,
    trial: int,
    out_zip: Path,
    *,
    fmt: str,
    force: bool = False,
    build: BuildRequest | None = None,
) -> BundleInfo:
    """Bundle trial number ``trial`` of ``study`` (its ``artifacts_dir``) in format ``fmt``.

    ``build`` (tflm only): build for the target's core and verify the image in QEMU first.
    """
    _check_format(fmt)
    check_output(out_zip, force)
    folder = trial_artifacts(storage, study, trial)
    if fmt == "tflm":
        return export_tflm_bundle(folder, out_zip, force=force, build=build)
    _no_build(build)
    return export_onnx_bundle(folder, out_zip, force=force)
