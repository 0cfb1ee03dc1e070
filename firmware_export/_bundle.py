"""What every bundle shares: the candidate's artifacts folder, the output check and the zip writer.

The artifacts folder is the contract with the candidate factory: ``model.tflite`` and/or
``model.onnx``, ``result.json`` (spec, target, dataset, figures, tinyfront_version) and
``val_samples.npz`` (``x`` float32 validation inputs as fed to the model, ``y`` int64 labels).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import ExportError
from search.figures import Figure
from search.targets import Target

#: Fixed timestamp of every zip entry, so that the same inputs give the same zip bytes.
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: the zip, its format (``"tflm"`` or ``"onnx"``) and its files with their sizes."""

    path: Path
    format: str
    files: dict[str, int]
    arena_size: int | None = None


@dataclass
class Candidate:
    """The parts of an artifacts folder a bundle is made from."""

    source: str
    result: dict[str, Any]
    tflite: bytes | None = None
    onnx_path: Path | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def need(self, dotted: str) -> Any:
        """The value at ``dotted`` (e.g. ``"dataset.class_names"``) in result.json, or ExportError."""
        node: Any = self.result
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ExportError(f"result.json in {self.source} has no key '{dotted}', which the export needs")
            node = node[part]
        return node

    @property
    def target(self) -> Target | None:
        raw = self.result.get("target")
        return Target.from_dict(raw) if isinstance(raw, dict) else None

    @property
    def class_names(self) -> list[str] | None:
        """The dataset's class names: ``dataset.classes`` as the candidate factory writes it
        (:meth:`search.data.Dataset.describe`), or ``dataset.class_names`` (older or hand-made folders)."""
        dataset = self.result.get("dataset")
        if not isinstance(dataset, dict):
            return None
        names = dataset.get("classes") or dataset.get("class_names")
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise ExportError(f"result.json in {self.source}: dataset class names must be a list of strings")
        return [str(n) for n in names] or None

    def figures(self) -> dict[str, Figure]:
        """The figures of result.json that parse as :class:`Figure` (others are skipped)."""
        out: dict[str, Figure] = {}
        for key, raw in (self.result.get("figures") or {}).items():
            try:
                out[key] = Figure.from_dict(raw)
            except (TypeError, ValueError):
                continue
        return out


def load_candidate(artifacts_dir: Path) -> Candidate:
    """Read ``artifacts_dir`` (see the module docstring); models stay optional, checked by each format."""
    folder = Path(artifacts_dir)
    if not folder.is_dir():
        raise ExportError(f"artifacts folder {folder} does not exist")
    result_path = folder / "result.json"
    if not result_path.is_file():
        raise ExportError(f"artifacts folder {folder} has no result.json")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"result.json in {folder} is not valid JSON: {exc}") from None
    if not isinstance(result, dict):
        raise ExportError(f"result.json in {folder} must hold an object, found {type(result).__name__}")
    cand = Candidate(source=str(folder), result=result)
    tflite = folder / "model.tflite"
    if tflite.is_file():
        cand.tflite = tflite.read_bytes()
    onnx = folder / "model.onnx"
    if onnx.is_file():
        cand.onnx_path = onnx
    samples = folder / "val_samples.npz"
    if samples.is_file():
        cand.x_val, cand.y_val = read_samples(samples)
    return cand


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (float32) and ``y`` (int64, or None when absent) of a samples .npz."""
    with np.load(path) as data:
        if "x" not in data:
            raise ExportError(f"{path} has no array 'x' (validation inputs)")
        x = np.asarray(data["x"], dtype=np.float32)
        y = np.asarray(data["y"], dtype=np.int64) if "y" in data else None
    if x.ndim < 2 or len(x) == 0:
        raise ExportError(f"{path}: 'x' must be a non-empty batch (n, ...), found shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise ExportError(f"{path}: 'y' has {len(y)} labels for {len(x)} inputs")
    return x, y


def check_output(out_zip: Path, force: bool) -> Path:
    """``out_zip`` as a Path, after refusing an existing file unless ``force``."""
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise ExportError(f"output must be a .zip file, got {out}")
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass force=True (CLI: --force) to overwrite it")
    if out.exists() and not out.is_file():
        raise ExportError(f"{out} exists and is not a file")
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_zip(out_zip: Path, files: dict[str, bytes], *, fmt: str, arena_size: int | None = None) -> BundleInfo:
    """Write ``files`` under a top folder named after the zip (``bundle.zip`` -> ``bundle/``), atomically."""
    out = Path(out_zip)
    out.parent.mkdir(parents=True, exist_ok=True)
    top = out.stem
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(f"{top}/{name}", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                mode = 0o755 if name.endswith(".py") else 0o644
                info.external_attr = (0o100000 | mode) << 16
                zf.writestr(info, files[name])
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return BundleInfo(path=out, format=fmt, files={n: len(files[n]) for n in sorted(files)}, arena_size=arena_size)


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n").encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
