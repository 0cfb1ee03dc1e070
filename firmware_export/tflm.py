"""The TensorFlow Lite Micro bundle: model.tflite, C sources, op resolver, build files, README, metadata.

Sources follow TFLite Micro's example conventions (``tensorflow/lite/micro/examples``):
``alignas(16) const unsigned char g_model_data[]`` with ``g_model_data_len``, a ``model_settings.h``
of constants, a ``MicroMutableOpResolver<N>`` with exactly the model's operators, and a
``main.cc`` inference loop. The templates are files in ``firmware_export/templates/tflm/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from firmware_export import _c_source as c
from firmware_export._arena import (
    ArenaChoice,
    ArenaMargin,
    choose_arena,
    cmsis_nn_margin,
    round_up,
    tensor_type_names,
)
from firmware_export._bundle import BundleInfo, Candidate, check_output, json_bytes, load_candidate, sha256, write_zip
from firmware_export._readme import checks_text, figure_rows
from firmware_export._resolver import Registration, op_registrations, resolver_values
from firmware_export._targets import BuildFlags, build_flags
from firmware_export._templates import render
from firmware_export._test_input import TestInput, choose_test_input
from search.errors import ExportError, MeasurementError
from search.targets import Target
from search.tflite_graph import GraphInfo, TensorInfo

if TYPE_CHECKING:
    from firmware_export.device import Verification

_BYTES_PER = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2}

#: tflite-micro commit the CMake file fetches when no tree is given (the commit the shared test trees
#: and the device checks were made from).
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"


@dataclass(frozen=True)
class BuildRequest:
    """``export --build``: the TFLite Micro tree (CMSIS-NN) to build with and where libraries are cached."""

    tflm_dir: Path | None = None  # None: $TINYFRONT_TFLM_DIR
    cache_dir: Path | None = None  # None: $TINYFRONT_BUILD_CACHE or ~/.cache/tinyfront/tflm
    kernels: tuple[str, ...] | None = None  # kernel stems to compile; None: the model's own operators


def export_tflm_bundle(
    artifacts_dir: Path, out_zip: Path, *, force: bool = False, build: BuildRequest | None = None
) -> BundleInfo:
    """Write the TFLite Micro bundle of the candidate in ``artifacts_dir`` to ``out_zip``.

    ``build``: compile it for the target's core and verify the image in QEMU first (``--build``).
    """
    out = check_output(out_zip, force)
    cand = load_candidate(Path(artifacts_dir))
    if cand.tflite is None:
        raise ExportError(f"artifacts folder {cand.source} has no model.tflite, which a TFLite Micro bundle needs")
    cand.need("spec")
    cand.need("dataset")
    return write_tflm_bundle(cand, out, cand.target, build)


def write_tflm_bundle(
    cand: Candidate, out: Path, target: Target | None, build: BuildRequest | None = None
) -> BundleInfo:
    """Build every file of the bundle for ``cand`` and zip them to ``out`` (already checked).

    With ``build``, the bundle is first compiled for the target's core and its image run in QEMU;
    the zip gets the prebuilt library and image and says "built and verified" only then.
    """
    files, arena = tflm_files(cand, target, build=build)
    if build is not None:
        verification, prebuilt = _build_and_verify(files, target, arena.size, build)
        files, _ = tflm_files(cand, target, verification=verification.to_dict(), extra_files=prebuilt, arena=arena)
    return write_zip(out, files, fmt="tflm", arena_size=arena.size)


def _build_and_verify(
    files: dict[str, bytes], target: Target | None, arena_size: int, build: BuildRequest
) -> tuple[Verification, dict[str, bytes]]:
    from firmware_export.device import build_and_verify

    flags = build_flags(target)
    if flags.default_platform != "cortex-m":
        raise ExportError(f"--build makes a Cortex-M image; target core {flags.core} is not a Cortex-M")
    bundle = json.loads(files["metadata.json"])["bundle"]
    dtype = bundle["output"]["dtype"]
    expected = np.asarray(bundle["test_input"]["host_output_raw"], dtype=dtype).tobytes()
    source = {name: body for name, body in files.items() if name not in ("README.md", "metadata.json")}
    return build_and_verify(
        source, flags.core, list(bundle["ops"]), expected, dtype, arena_size,
        tree=build.tflm_dir, cache_dir=build.cache_dir, kernels=build.kernels,
    )  # fmt: skip


def _graph(model: bytes) -> GraphInfo:
    from search.tflite_graph import parse_tflite

    try:
        return parse_tflite(model)
    except MeasurementError as exc:
        raise ExportError(f"model.tflite cannot be read: {exc}") from None


def _check_runs_on_tflm(model: bytes, graph: GraphInfo) -> list[str]:
    """Resolver method of every op, after refusing what TFLite Micro cannot run."""
    from search.tflite_graph import resolver_method_name

    types = tensor_type_names(model)
    if "FLOAT16" in types:
        raise ExportError(
            "TFLite Micro cannot run float16 models: model.tflite has FLOAT16 tensors (float16 weights "
            "with DEQUANTIZE ops); export an int8, int16x8 or float32 candidate for this target instead"
        )
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ExportError(
            f"the bundle's main.cc drives one input and one output tensor; model.tflite has "
            f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs"
        )
    for spec in (graph.inputs[0], graph.outputs[0]):
        if spec.dtype not in _BYTES_PER:
            raise ExportError(f"tensor '{spec.name}' has type {spec.dtype}; expected float32, int8, uint8 or int16")
    methods = []
    for op in graph.ops:
        try:
            methods.append(resolver_method_name(op))
        except MeasurementError as exc:
            raise ExportError(f"cannot export to TFLite Micro: {exc}") from None
    return methods


def _check_device_kernels(model: bytes, core: str) -> None:
    """Refuse a model the core's own kernels (CMSIS-NN on Cortex-M) would reject in ``AllocateTensors``."""
    from search.kernels import device_kernel_problems, kernel_set

    try:
        problems = device_kernel_problems(model, core)
    except MeasurementError as exc:
        raise ExportError(f"model.tflite cannot be read: {exc}") from None
    if problems:
        raise ExportError(
            f"model.tflite would not run with the {kernel_set(core).name} kernels of {core}: {'; '.join(problems)}"
        )


def tflm_files(
    cand: Candidate,
    target: Target | None,
    *,
    verification: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    build: BuildRequest | None = None,
    arena: ArenaChoice | None = None,
) -> tuple[dict[str, bytes], ArenaChoice]:
    """All files of the bundle (name -> bytes) and ``kTensorArenaSize`` with its source.

    ``verification`` / ``extra_files``: what ``export --build`` ran and the prebuilt files it made.
    ``kTensorArenaSize`` (unless ``arena`` gives it) is the device runner's bisected minimum when a
    runner for the target's core is available (``build``'s tree or $TINYFRONT_TFLM_DIR), else the
    host-measured arena + the CMSIS-NN margin (:func:`firmware_export._arena.choose_arena`).
    """
    from search.tflm import measure_arena

    assert cand.tflite is not None
    model = cand.tflite
    graph = _graph(model)
    _check_runs_on_tflm(model, graph)
    flags = build_flags(target)
    _check_device_kernels(model, flags.core)
    regs = op_registrations(model, flags.core)
    try:
        measured = measure_arena(model)
    except MeasurementError as exc:
        raise ExportError(f"cannot measure the tensor arena: {exc}") from None
    margin = cmsis_nn_margin(model, flags.core)
    host_size = round_up(measured.arena_bytes + margin.total, 16)
    if arena is None:
        arena = _choose_arena(model, target, flags.core, host_size, build)
    arena_size = arena.size
    spec_in, spec_out = graph.inputs[0], graph.outputs[0]
    # The host interpreter (64-bit pointers) may need more than the device's 32-bit arena.
    test_arena = max(arena_size, host_size)
    test = choose_test_input(model, spec_in, spec_out, test_arena, cand.x_val, cand.y_val, _samples_name(cand))
    labels = _labels(cand.class_names, spec_out)
    version = _tinyfront_version()
    values = _common_values(version, model, flags)
    arena_values = {
        "arena_measured": measured.arena_bytes,
        "arena_32bit": measured.arena_bytes_32bit,
        "arena_margin": margin.total,
        "arena_size": arena_size,
        "margin_explain": c.c_comment(margin.explain()),
        "core_class": margin.core_class,
        "arena_size_comment": c.c_comment(_arena_size_comment(arena)),
    }
    files: dict[str, bytes] = {"model.tflite": model}
    text = {
        "model_data.h": render("tflm/model_data.h", _pick(values, "version", "model_len", "model_sha256")),
        "model_data.cc": render(
            "tflm/model_data.cc",
            {**_pick(values, "version", "model_len", "model_sha256"), "model_bytes": c.c_bytes(model)},
        ),
        "model_settings.h": render(
            "tflm/model_settings.h",
            {
                **_settings_values(spec_in, spec_out, labels),
                **arena_values,
                "version": version,
                "core": flags.core_label,
            },
        ),
        "model_op_resolver.h": render("tflm/model_op_resolver.h", {"version": version, **resolver_values(regs)}),
        "test_input.h": render("tflm/test_input.h", _test_header_values(test, spec_in, version)),
        "test_input.cc": render(
            "tflm/test_input.cc",
            {
                "version": version,
                "source": c.c_comment(test.source),
                "input_values": c.c_floats(test.x.reshape(-1)),
                "output_bytes_values": c.c_bytes(test.host_output_raw.tobytes()),
            },
        ),
        "tinyfront_model.h": render("tflm/tinyfront_model.h", {"version": version}),
        "tinyfront_model.cc": render("tflm/tinyfront_model.cc", {"version": version}),
        "main.cc": render("tflm/main.cc", {"version": version}),
        "Makefile": render(
            "tflm/Makefile",
            _pick(
                values, "version", "target_name", "core", "default_platform", "cpu", "float_flags", "tflm_target_arch"
            ),
        ),
        "CMakeLists.txt": render(
            "tflm/CMakeLists.txt",
            {
                **_pick(values, "version", "target_name", "core", "default_platform", "cpu", "float_flags"),
                "tflm_commit": TFLM_COMMIT,
            },
        ),
    }
    files.update({name: body.encode("utf-8") for name, body in text.items()})
    files.update(extra_files or {})
    files["README.md"] = _readme(
        cand, graph, flags, measured.arena_bytes, measured.arena_bytes_32bit, margin, arena, test_arena, test,
        values, verification,
    ).encode()  # fmt: skip
    meta = _metadata(cand, graph, regs, flags, measured.to_dict(), margin, arena, test, labels, files)
    meta["bundle"]["verification"] = verification or {
        "status": "not built or run for this model where it was made (export without --build)"
    }
    files["metadata.json"] = json_bytes(meta)
    return files, arena


def _choose_arena(
    model: bytes, target: Target | None, core: str, host_size: int, build: BuildRequest | None
) -> ArenaChoice:
    if target is None:
        return ArenaChoice(host_size, "host", host_size, None, "no target given")
    tree = build.tflm_dir if build is not None else None
    cache = build.cache_dir if build is not None else None
    return choose_arena(model, core, host_size, tree=tree, cache_dir=cache)


def _arena_size_comment(arena: ArenaChoice) -> str:
    if arena.source == "device" and arena.device is not None:
        d = arena.device
        return (
            f"{arena.text}: the smallest arena in which AllocateTensors() succeeds with the device kernels "
            f"(tinyfront device runner {d['runner_core']}, {d['board']}, bisected: {d['arena_min_bytes']} B), "
            f"rounded up to 16; allocating with exactly this size was checked there. "
            f"(Host measured + margin would state {arena.host_size}.)"
        )
    return f"{arena.text}: measured + margin, rounded up to a multiple of 16 ({arena.fallback_reason})."


def _pick(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: values[k] for k in keys}


def _tinyfront_version() -> str:
    from search import __version__

    return __version__


def _samples_name(cand: Candidate) -> str:
    dataset = cand.result.get("dataset") or {}
    name = dataset.get("name") or "the validation set"
    fingerprint = dataset.get("fingerprint")
    return f"{name} (fingerprint {fingerprint})" if fingerprint else str(name)


def _labels(class_names: list[str] | None, spec_out: TensorInfo) -> list[str]:
    n = int(np.prod(spec_out.shape[1:])) if len(spec_out.shape) > 1 else int(np.prod(spec_out.shape))
    if class_names and len(class_names) == n:
        return list(class_names)
    if class_names:
        raise ExportError(f"{len(class_names)} class names given for a model with {n} outputs")
    return [f"class_{i}" for i in range(n)]


def _common_values(version: str, model: bytes, flags: BuildFlags) -> dict[str, Any]:
    return {
        "version": version,
        "model_len": len(model),
        "model_sha256": sha256(model),
        "target_name": flags.target_name,
        "core": flags.core_label,
        "default_platform": flags.default_platform,
        "cpu": flags.cpu,
        "float_flags": flags.float_flags,
        "tflm_target_arch": flags.tflm_target_arch,
    }


def _quant(spec: TensorInfo) -> tuple[str, int]:
    if spec.dtype == "float32" or spec.scale is None:
        return c.c_float(0.0), 0
    return c.c_float(spec.scale), int(spec.zero_point or 0)


def _settings_values(spec_in: TensorInfo, spec_out: TensorInfo, labels: list[str]) -> dict[str, Any]:
    in_scale, in_zp = _quant(spec_in)
    out_scale, out_zp = _quant(spec_out)
    layout = ""
    if len(spec_in.shape) == 4:
        _, rows, cols, channels = spec_in.shape
        layout = "".join(
            f"constexpr int {name} = {value};\n"
            for name, value in (("kNumRows", rows), ("kNumCols", cols), ("kNumChannels", channels))
        )
    return {
        "input_name": c.c_comment(spec_in.name).replace('"', "'"),
        "input_rank": len(spec_in.shape),
        "input_shape": c.c_ints(spec_in.shape),
        "input_elements": int(np.prod(spec_in.shape)),
        "input_layout": layout,
        "input_type": spec_in.dtype,
        "input_bytes_per_element": _BYTES_PER[spec_in.dtype],
        "input_scale": in_scale,
        "input_zero_point": in_zp,
        "output_name": c.c_comment(spec_out.name).replace('"', "'"),
        "output_elements": int(np.prod(spec_out.shape)),
        "output_type": spec_out.dtype,
        "output_bytes_per_element": _BYTES_PER[spec_out.dtype],
        "output_scale": out_scale,
        "output_zero_point": out_zp,
        "num_classes": len(labels),
        "labels": "\n".join(f"    {c.c_string(label)}," for label in labels),
    }


def _test_header_values(test: TestInput, spec_in: TensorInfo, version: str) -> dict[str, Any]:
    return {
        "version": version,
        "source": c.c_comment(test.source),
        "input_elements": int(np.prod(spec_in.shape)),
        "expected_class": test.expected_class,
        "host_top_class": test.host_top_class,
        "output_bytes": len(test.host_output_raw.tobytes()),
    }


def _readme(
    cand: Candidate,
    graph: GraphInfo,
    flags: BuildFlags,
    arena_measured: int,
    arena_32bit: int,
    margin: ArenaMargin,
    arena: ArenaChoice,
    test_arena: int,
    test: TestInput,
    values: dict[str, Any],
    verification: dict[str, Any] | None,
) -> str:
    spec = cand.result.get("spec") or {}
    model_line = ", ".join(f"{k} {spec[k]}" for k in ("family", "width", "sparsity", "precision", "seed") if k in spec)
    spec_in, spec_out = graph.inputs[0], graph.outputs[0]

    def tensor_line(t: TensorInfo) -> str:
        q = f", scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale is not None else ""
        return f"{t.dtype} {list(t.shape)}{q}"

    expected = f"label {test.expected_class}" if test.expected_class >= 0 else "no label"
    return render(
        "tflm/README.md",
        {
            "title": f"TFLite Micro bundle for {flags.target_name}",
            "version": values["version"],
            "target_line": flags.target_line,
            "model_line": (model_line or cand.source)
            + f"; {graph.macs:,} MACs, {graph.params:,} parameters, {len(cand.tflite or b''):,} bytes",
            "input_line": tensor_line(spec_in),
            "output_line": tensor_line(spec_out),
            "num_ops": len(graph.ops),
            "op_list": ", ".join(f"`{op}`" for op in graph.ops),
            "arena_size": arena.size,
            "arena_source_line": _arena_source_line(arena, arena_measured, margin),
            "arena_source_text": _arena_size_comment(arena),
            "arena_measured": arena_measured,
            "arena_margin": margin.total,
            "arena_32bit": arena_32bit,
            "margin_explain": margin.explain(),
            "core": flags.core_label,
            "figure_rows": figure_rows(cand.figures()),
            "model_sha256": values["model_sha256"],
            "test_input_line": (
                f"{test.source}: float values, {expected}, host TFLM top class {test.host_top_class} "
                "and raw output bytes"
            ),
            "tflm_target_arch": flags.tflm_target_arch,
            "cpu_line": flags.cpu_line,
            "core_note": flags.note,
            "checks": checks_text(test_arena, _tflm_package_version(), verification, device_arena=arena.device),
        },
    )


def _arena_source_line(arena: ArenaChoice, arena_measured: int, margin: ArenaMargin) -> str:
    if arena.source == "device" and arena.device is not None:
        return f"bisected minimum {arena.device['arena_min_bytes']} B rounded up to 16, {arena.text}"
    return f"{arena_measured} measured + {margin.total} margin, rounded up to 16 ({arena.text})"


def _tflm_package_version() -> str:
    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _metadata(
    cand: Candidate,
    graph: GraphInfo,
    regs: list[Registration],
    flags: BuildFlags,
    measured: dict[str, Any],
    margin: ArenaMargin,
    arena: ArenaChoice,
    test: TestInput,
    labels: list[str],
    files: dict[str, bytes],
) -> dict[str, Any]:
    def tensor(t: TensorInfo) -> dict[str, Any]:
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "scale": t.scale, "zero_point": t.zero_point}

    bundle = {
        "format": "tflm",
        "generated_by": f"tinyfront {_tinyfront_version()}",
        "source": cand.source,
        "model": {"file": "model.tflite", "bytes": len(cand.tflite or b""), "sha256": sha256(cand.tflite or b"")},
        "ops": list(graph.ops),
        "op_resolver": {
            "class": f"tflite::MicroMutableOpResolver<{len(regs)}>",
            "methods": [r.method for r in regs],
            "registrations": [{"op": r.op, "call": r.call, "types": r.types} for r in regs],
        },
        "input": tensor(graph.inputs[0]),
        "output": tensor(graph.outputs[0]),
        "class_names": labels,
        "arena": {
            "tensor_arena_size": arena.size,
            **arena.to_dict(),
            "measured_bytes": measured["arena_bytes"],
            "measured_bytes_32bit_estimate": measured["arena_bytes_32bit"],
            "measured_with": f"tflite-micro {_tflm_package_version()} Python interpreter, reference kernels, this host",
            "margin_bytes": margin.total,
            "margin": {
                "core_class": margin.core_class,
                "max_scratch_bytes": margin.max_scratch_bytes,
                "max_scratch_op": margin.max_scratch_op,
                "persistent_bytes": margin.persistent_bytes,
                "fixed_bytes": margin.fixed_bytes,
                "explain": margin.explain(),
            },
            "allocator_breakdown": measured["breakdown"],
        },
        "test_input": {
            "source": test.source,
            "index": test.index,
            "expected_class": test.expected_class,
            "host_top_class": test.host_top_class,
            "host_output_raw": test.host_output_raw.reshape(-1).tolist(),
        },
        "build": {
            "default_platform": flags.default_platform,
            "cpu": flags.cpu,
            "float_flags": flags.float_flags,
            "tflm_target_arch": flags.tflm_target_arch,
        },
        "files": {name: len(body) for name, body in sorted(files.items())},
    }
    return {**cand.result, "bundle": bundle}
