"""The ONNX Runtime bundle: model.onnx, labels, metadata, infer.py, benchmark.py, README.

The model is the candidate's ``model.onnx`` (float32, float16 or int8 QDQ from ONNX Runtime's
static quantisation) or, when the folder holds only ``model.tflite``, that model converted with
``tf2onnx.convert.from_tflite`` (a full-integer .tflite keeps int8 input/output; the bundle's
scripts quantise and dequantise with the .tflite's scale and zero point). Before zipping, the
model is loaded in ONNX Runtime here and run on the bundled samples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export._bundle import BundleInfo, Candidate, check_output, json_bytes, load_candidate, sha256, write_zip
from firmware_export._readme import figure_rows
from firmware_export._templates import render
from firmware_export._test_input import SYNTHETIC_SEED
from search import _lazy
from search.errors import ExportError, MeasurementError

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 10: "float16", 11: "float64"}
_SCRIPTS = ("infer.py", "benchmark.py", "bundle_runtime.py")


def export_onnx_bundle(artifacts_dir: Path, out_zip: Path, *, force: bool = False) -> BundleInfo:
    """Write the ONNX Runtime bundle of the candidate in ``artifacts_dir`` to ``out_zip``."""
    out = check_output(out_zip, force)
    cand = load_candidate(Path(artifacts_dir))
    cand.need("spec")
    cand.need("dataset")
    return write_onnx_bundle(cand, out)


def write_onnx_bundle(cand: Candidate, out: Path) -> BundleInfo:
    """Build every file of the bundle for ``cand`` and zip them to ``out`` (already checked)."""
    model, origin = _onnx_model(cand)
    onnx = _lazy.require("onnx")
    proto = onnx.load_from_string(model)
    io_in, io_out = _io(proto, cand)
    x, y = _samples(cand, io_in["shape"])
    check = _run_here(model, x, y, io_in, io_out)
    labels = _labels(cand, check["outputs"])
    version = _version()
    files: dict[str, bytes] = {"model.onnx": model, "labels.txt": ("\n".join(labels) + "\n").encode()}
    files["sample_input.npy"] = _npy(x)
    if y is not None:
        files["sample_labels.npy"] = _npy(y)
    preprocessing = _preprocessing(cand)
    for name in _SCRIPTS:
        values: dict[str, Any] = {"version": version}
        if name == "infer.py":
            values["preprocessing"] = preprocessing
        files[name] = render(f"onnx/{name}", values).encode()
    ort = _lazy.require("onnxruntime")
    files["requirements.txt"] = render("onnx/requirements.txt", {"ort_min": "1.16"}).encode()
    files["README.md"] = _readme(cand, proto, io_in, io_out, labels, origin, check, x, y, preprocessing, model).encode()
    bundle = {
        "format": "onnx",
        "generated_by": f"tinyfront {version}",
        "source": cand.source,
        "model": {"file": "model.onnx", "bytes": len(model), "sha256": sha256(model), "origin": origin},
        "input": io_in,
        "output": io_out,
        "class_names": labels,
        "checked_here": {
            "onnxruntime": ort.__version__,
            "provider": "CPUExecutionProvider",
            "samples": int(len(x)),
            "samples_source": "validation samples" if cand.x_val is not None else "synthetic (seeded noise)",
            "top1_correct": check["correct"],
        },
        "files": {name: len(body) for name, body in sorted(files.items())},
    }
    files["metadata.json"] = json_bytes({**_result_for_onnx(cand), "bundle": bundle})
    return write_zip(out, files, fmt="onnx")


def _figures_owner(cand: Candidate) -> str | None:
    """None when the search's figures describe this bundle's .onnx; otherwise what they describe.

    Only a candidate searched for an ONNX Runtime target was measured as ``model.onnx``; a TFLite
    Micro or LiteRT trial's figures (accuracy in TFLite Micro, MCU flash, arena, latency) belong
    to its ``model.tflite`` on that board.
    """
    target = cand.target
    if target is not None and target.runtime == "onnxruntime" and cand.onnx_path is not None:
        return None
    if not cand.result.get("figures"):
        return None
    board = f"{target.name} ({target.runtime})" if target is not None else "the search's target"
    return f"model.tflite of the candidate on {board}, not this model.onnx"


def _result_for_onnx(cand: Candidate) -> dict[str, Any]:
    """result.json for metadata.json: another artifact's figures move to ``tflite_figures``, labelled."""
    owner = _figures_owner(cand)
    if owner is None:
        return dict(cand.result)
    result = {k: v for k, v in cand.result.items() if k != "figures"}
    result["figures"] = {}
    result["tflite_figures"] = {"describes": owner, "figures": cand.result.get("figures")}
    return result


def _version() -> str:
    from search import __version__

    return __version__


def _onnx_model(cand: Candidate) -> tuple[bytes, str]:
    """The ONNX bytes and where they came from."""
    if cand.onnx_path is not None:
        return cand.onnx_path.read_bytes(), "model.onnx of the candidate"
    if cand.tflite is None:
        raise ExportError(f"artifacts folder {cand.source} has neither model.onnx nor model.tflite")
    tf2onnx = _lazy.require("tf2onnx")
    _lazy.tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(cand.tflite)
        try:
            proto, _ = tf2onnx.convert.from_tflite(str(path), opset=17)
        except Exception as exc:  # tf2onnx raises many unrelated types
            raise ExportError(f"tf2onnx could not convert model.tflite to ONNX: {type(exc).__name__}: {exc}") from None
    return (
        proto.SerializeToString(),
        "model.tflite of the candidate converted with tf2onnx.convert.from_tflite (opset 17)",
    )


def _io(proto: Any, cand: Candidate) -> tuple[dict[str, Any], dict[str, Any]]:
    """Name, shape, dtype and (for integer tensors) the .tflite's scale / zero point of input and output 0."""
    if len(proto.graph.input) < 1 or len(proto.graph.output) < 1:
        raise ExportError("model.onnx has no graph input or output")
    quant = _tflite_quant(cand)

    def describe(value: Any, which: str) -> dict[str, Any]:
        tt = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tt.elem_type, f"onnx_type_{tt.elem_type}")
        shape = [d.dim_value if d.dim_value > 0 else None for d in tt.shape.dim]
        info: dict[str, Any] = {"name": value.name, "shape": shape, "dtype": dtype, "scale": None, "zero_point": None}
        if dtype in ("int8", "uint8", "int16"):
            if which not in quant:
                raise ExportError(f"model.onnx has an {dtype} {which} but no .tflite gives its scale and zero point")
            info["scale"], info["zero_point"] = quant[which]
        return info

    return describe(proto.graph.input[0], "input"), describe(proto.graph.output[0], "output")


def _tflite_quant(cand: Candidate) -> dict[str, tuple[float, int]]:
    if cand.tflite is None:
        return {}
    from search.tflite_graph import parse_tflite

    try:
        graph = parse_tflite(cand.tflite)
    except MeasurementError:
        return {}
    out: dict[str, tuple[float, int]] = {}
    for which, specs in (("input", graph.inputs), ("output", graph.outputs)):
        if specs and specs[0].scale is not None:
            out[which] = (float(specs[0].scale), int(specs[0].zero_point or 0))
    return out


def _samples(cand: Candidate, shape: list[int | None]) -> tuple[np.ndarray, np.ndarray | None]:
    per_sample = [d or 1 for d in shape[1:]]
    if cand.x_val is not None:
        x = cand.x_val
        if int(np.prod(x.shape[1:])) != int(np.prod(per_sample)):
            raise ExportError(f"validation samples have shape {tuple(x.shape[1:])}; model.onnx takes {shape}")
        return x.reshape(len(x), *per_sample).astype(np.float32), cand.y_val
    rng = np.random.default_rng(SYNTHETIC_SEED)
    return rng.uniform(0.0, 1.0, size=(4, *per_sample)).astype(np.float32), None


def _run_here(
    model: bytes, x: np.ndarray, y: np.ndarray | None, io_in: dict[str, Any], io_out: dict[str, Any]
) -> dict[str, Any]:
    """Load the model in ONNX Runtime (CPU) and run every sample; top-1 hits against the labels."""
    ort = _lazy.require("onnxruntime")
    from firmware_export._test_input import dequantize, quantize
    from search.tflite_graph import TensorInfo

    try:
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise ExportError(f"ONNX Runtime cannot load the model: {type(exc).__name__}: {exc}") from None
    spec_in = TensorInfo(io_in["name"], (), io_in["dtype"], io_in["scale"], io_in["zero_point"])
    spec_out = TensorInfo(io_out["name"], (), io_out["dtype"], io_out["scale"], io_out["zero_point"])
    preds = []
    outputs = 0
    for sample in x:
        if io_in["dtype"] in ("int8", "uint8", "int16"):
            feed = quantize(sample[np.newaxis], spec_in)
        else:
            feed = sample[np.newaxis].astype(io_in["dtype"])
        raw = sess.run(None, {io_in["name"]: feed})[0]
        scores = dequantize(np.asarray(raw), spec_out).reshape(-1)
        outputs = scores.size
        preds.append(int(np.argmax(scores)))
    correct = None if y is None else int(np.sum(np.asarray(preds) == y))
    return {"preds": preds, "correct": correct, "outputs": outputs}


def _labels(cand: Candidate, outputs: int) -> list[str]:
    names = cand.class_names
    if names and len(names) == outputs:
        return names
    if names:
        raise ExportError(f"{len(names)} class names given for a model with {outputs} outputs")
    return [f"class_{i}" for i in range(outputs)]


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _preprocessing(cand: Candidate) -> str:
    dataset = cand.result.get("dataset") or {}
    text = dataset.get("preprocessing")
    if text:
        return str(text)
    name = dataset.get("name")
    return f"as for dataset {name}" if name else "as for the data the model was trained on"


def _figures_intro(cand: Candidate) -> str:
    owner = _figures_owner(cand)
    text = (
        "Every figure says whether it was **measured** (a real runtime ran the artifact) or **estimated**\n"
        "(for a Linux board: this host's latency times the target's `host_scale`, a rough factor)."
    )
    if owner is None:
        return text
    return (
        f"**These figures describe {owner}.** This .onnx was not measured by the search: "
        "what was checked here is under *What was checked where this bundle was made* below\n"
        "(ONNX Runtime on the bundled samples).\n\n" + text
    )


def _readme(
    cand: Candidate,
    proto: Any,
    io_in: dict[str, Any],
    io_out: dict[str, Any],
    labels: list[str],
    origin: str,
    check: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray | None,
    preprocessing: str,
    model: bytes,
) -> str:
    target = cand.target
    target_line = (
        f"{target.name}: {target.description}; {target.core}, runtime {target.runtime}" if target else "none given"
    )
    spec = cand.result.get("spec") or {}
    model_line = ", ".join(f"{k} {spec[k]}" for k in ("family", "width", "sparsity", "precision", "seed") if k in spec)
    ops = sorted({n.op_type for n in proto.graph.node})

    def tensor_line(t: dict[str, Any]) -> str:
        q = f", scale {t['scale']:.6g}, zero point {t['zero_point']}" if t["scale"] is not None else ""
        return f"`{t['name']}` {t['dtype']} {t['shape']}{q}"

    input_note = ""
    if io_in["dtype"] in ("int8", "uint8", "int16"):
        input_note = (
            f"The model takes {io_in['dtype']} input: the scripts quantise with scale {io_in['scale']:.6g} and "
            f"zero point {io_in['zero_point']} (stored in metadata.json)."
        )
    if y is not None:
        samples_line = f"{len(x)} validation samples (float32) and their labels"
        result = f"{check['correct']} of {len(x)} predicted correctly"
    else:
        samples_line = f"{len(x)} synthetic inputs (seeded uniform noise): no validation samples came with the model"
        result = "no labels to compare with"
    ort = _lazy.require("onnxruntime")
    checks = "\n".join(
        [
            f"* ONNX Runtime {ort.__version__} (CPUExecutionProvider) loaded `model.onnx` and ran the {len(x)} samples",
            f"  in `sample_input.npy`: {result} (measured here).",
            "* Not checked: other execution providers (CUDA, TensorRT) and the target board itself; the board's",
            "  latency in the table above is an estimate unless it says measured. Run `benchmark.py` on the board.",
        ]
    )
    return render(
        "onnx/README.md",
        {
            "title": f"ONNX Runtime bundle for {target.name if target else 'a Linux board'}",
            "version": _version(),
            "target_line": target_line,
            "model_line": (model_line or cand.source) + f"; {len(model):,} bytes, ops: {', '.join(ops)}",
            "input_line": tensor_line(io_in),
            "output_line": tensor_line(io_out),
            "num_classes": len(labels),
            "figures_intro": _figures_intro(cand),
            "figure_rows": figure_rows(cand.figures()),
            "preprocessing": preprocessing,
            "input_shape": io_in["shape"],
            "input_note": input_note,
            "model_file_line": origin,
            "model_sha256": sha256(model),
            "labels_file": ", `sample_labels.npy`" if y is not None else "",
            "samples_line": samples_line,
            "checks": checks,
        },
    )
