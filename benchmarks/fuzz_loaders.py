"""Fuzz the three loaders users feed: targets files, datasets (.npz, image folders) and .tflite graphs.

Every input is a real file written to a temporary folder: mutated copies of the shipped
``targets.toml`` values, generated ``.npz`` archives and image folders (valid, broken, truncated,
byte-mutated, header-only bombs), and byte- or field-mutated MLPerf Tiny models from
``../shared/models/mlperf-tiny/`` (skipped, with a note, when that folder is absent). Each input
ends in one of:

- ``valid``: a result that satisfies the loader's documented invariants;
- ``clean``: one tinyfront error (a subclass of ``search.errors.TinyfrontError``);
- ``contained``: a .tflite that crashed or hung TFLite Micro, caught by the process wall and
  reported as a ``MeasurementError`` (a clean error for the user, but a hole in the validation);
- ``accepted_invalid``: a result that breaks an invariant (e.g. a nan budget accepted);
- ``uncaught``: any other exception (a traceback for the user);
- ``crash``: the process running the loader died (the .tflite cases run in a child process).

Prints one line per loader; asserts nothing. The tests (tests/test_fuzz.py) reuse these generators.

    python benchmarks/fuzz_loaders.py                       # the default budget
    python benchmarks/fuzz_loaders.py --scale 0.2 --seed 1  # a smaller run with another seed
"""

from __future__ import annotations

import argparse
import io
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search.errors import TinyfrontError  # noqa: E402

MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny"
TFLITE_BASES = ("kws_ref_model.tflite", "ad01_int8.tflite")
KINDS = ("valid", "clean", "contained", "accepted_invalid", "uncaught", "crash")


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""


def classify(load: Callable[[], Any], check: Callable[[Any], str]) -> Outcome:
    """Run ``load``; sort what happens into one of :data:`KINDS` (``check`` names a broken invariant)."""
    try:
        result = load()
    except TinyfrontError as exc:
        text = str(exc)
        contained = "TFLite Micro crashed (" in text or "TFLite Micro timed out" in text
        return Outcome("contained" if contained else "clean", text)
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome("uncaught", f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")
    problem = check(result)
    return Outcome("accepted_invalid", problem) if problem else Outcome("valid")


# ------------------------------------------------------------------------------------------ targets.toml

TARGET_FIELDS: dict[str, Any] = {
    "description": "fuzzed board",
    "core": "cortex-m33",
    "clock_mhz": 110,
    "flash_kb": 512,
    "sram_kb": 256,
    "runtime": "tflm",
}
BUDGET_FIELDS: dict[str, Any] = {"app_flash_kb": 128, "app_sram_kb": 64, "latency_ms": 200}
#: Values a fuzzed key may take: every TOML type, the float specials, extremes and near-misses.
VALUE_POOL: list[Any] = [
    0, -1, 1, 7, 2**63 - 1, -(2**63), 10**400, 0.0, -0.0, 1e-300, 1e308, -1e308, 0.5,
    math.nan, math.inf, -math.inf, "", " ", "tflm", "onnxruntime", "litert", "cortex-m4", "x" * 300, "\u00e9\u2603",
    True, False, [], [1, 2], {"a": 1}, {},
]  # fmt: skip


def toml_value(value: Any) -> str:
    """``value`` written as TOML (enough of TOML for the pool above)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def render_targets(fields: dict[str, Any], budget: dict[str, Any] | Any, name: str = "fuzz") -> str:
    lines = [f'[targets."{name}"]'] + [f"{k} = {toml_value(v)}" for k, v in fields.items()]
    if budget is not None:
        lines.append(f"budget = {toml_value(budget)}")
    return "\n".join(lines) + "\n"


def check_targets(targets: Any) -> str:
    """Empty when every loaded Target holds finite, in-range values; else what is wrong."""
    from search.targets import RUNTIMES

    for t in targets.values():
        numbers = {"clock_mhz": t.clock_mhz, "flash_kb": t.flash_kb, "sram_kb": t.sram_kb}
        numbers["latency_budget_ms"] = t.latency_budget_ms
        for key, value in numbers.items():
            if not (math.isfinite(value) and value > 0):
                return f"target '{t.name}' accepted {key} = {value!r}"
        for key, value in {"app_flash_kb": t.app_flash_kb, "app_sram_kb": t.app_sram_kb}.items():
            if not math.isfinite(value) or value < 0:
                return f"target '{t.name}' accepted {key} = {value!r}"
        if t.host_scale is not None and not (math.isfinite(t.host_scale) and t.host_scale > 0):
            return f"target '{t.name}' accepted host_scale = {t.host_scale!r}"
        if not (t.flash_budget_kb > 0 and t.sram_budget_kb > 0) or t.runtime not in RUNTIMES:
            return f"target '{t.name}' has no room for a model or an unknown runtime"
    return ""


def random_targets_text(rng: np.random.Generator) -> bytes:
    """A targets file: the valid one with some keys changed, dropped or added, or its bytes mangled."""
    fields, budget = dict(TARGET_FIELDS), dict(BUDGET_FIELDS)
    for _ in range(int(rng.integers(1, 4))):
        table = fields if rng.random() < 0.6 else budget
        keys = [*table, "host_scale", "unknown_key"]
        key = keys[int(rng.integers(len(keys)))]
        if rng.random() < 0.15:
            table.pop(key, None)
        else:
            table[key] = VALUE_POOL[int(rng.integers(len(VALUE_POOL)))]
    data = render_targets(fields, budget).encode()
    roll = rng.random()
    if roll < 0.15:  # byte mutations, invalid UTF-8 included
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        data = bytes(raw)
    elif roll < 0.2:
        data = data[: int(rng.integers(len(data)))]
    return data


def run_targets_case(data: bytes, folder: Path) -> Outcome:
    from search.targets import load_targets

    path = folder / "targets.toml"
    path.write_bytes(data)
    return classify(lambda: load_targets(path), check_targets)


# ------------------------------------------------------------------------------------------ datasets

_NPZ_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "int64", "uint64", "float16", "float32", "float64",
               "bool", "complex64", "<U3")  # fmt: skip


def _random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "<U3":
        return rng.choice(np.array(["a", "bb", "ccc", ""]), size=shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith(("float", "complex")):
        a = rng.uniform(-0.5, 1.5, size=shape)
        if a.size and rng.random() < 0.2:
            a.reshape(-1)[int(rng.integers(a.size))] = [np.nan, np.inf, -np.inf, 1e30][int(rng.integers(4))]
        return a.astype(dtype)
    info = np.iinfo(dtype)
    hi = [256, 70_000, int(info.max)][int(rng.integers(3))]
    lo = 0 if rng.random() < 0.8 else max(int(info.min), -5)
    return rng.integers(lo, min(hi, int(info.max)), size=shape, endpoint=True, dtype=dtype)


def _random_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    k = int(rng.integers(2, 4)) if rng.random() < 0.9 else 1
    y = np.arange(n) % k  # every class present, as often as possible
    roll = rng.random()
    if roll < 0.65 or n == 0:
        return y
    if roll < 0.65:
        y[int(rng.integers(n))] = [10**8, 2**62, -1, n][int(rng.integers(4))]
        return y
    if roll < 0.75:
        return np.eye(k, dtype=[np.float32, np.uint8][int(rng.integers(2))])[y]
    if roll < 0.85:
        return _random_array(rng, (n,), _NPZ_DTYPES[int(rng.integers(len(_NPZ_DTYPES)))])
    return y.astype(np.float64) + [0.0, 0.5, np.nan][int(rng.integers(3))]


def random_npz(rng: np.random.Generator, path: Path) -> None:
    """Write a .npz: mostly plausible image/label arrays with one thing off, sometimes byte-mutated."""
    n = int(rng.integers(12, 60)) if rng.random() < 0.8 else int(rng.integers(0, 12))
    ndim = [3, 4, 4, 4, 2, 5, 1][int(rng.integers(7))]
    dims = [n] + [int(rng.integers(1, 9)) if rng.random() < 0.9 else 0 for _ in range(ndim - 1)]
    if ndim == 4 and rng.random() < 0.7:
        dims[3] = [1, 3][int(rng.integers(2))]
    dtype = _NPZ_DTYPES[int(rng.integers(len(_NPZ_DTYPES)))] if rng.random() < 0.3 else "uint8"
    x = _random_array(rng, tuple(dims), dtype)
    y = _random_labels(rng, n if rng.random() < 0.9 else max(0, n - 1))
    arrays: dict[str, np.ndarray]
    if rng.random() < 0.7:
        arrays = {"x": x, "y": y}
    else:
        cut = n // 2
        arrays = {"x_train": x[cut:], "y_train": y[cut:], "x_val": x[:cut], "y_val": y[:cut]}
    if rng.random() < 0.2:
        arrays["class_names"] = _random_array(rng, (int(rng.integers(0, 5)),), ["<U3", "int32"][int(rng.integers(2))])
    if rng.random() < 0.1:
        arrays.pop(list(arrays)[int(rng.integers(len(arrays)))])
    np.savez(path, **arrays)  # type: ignore[arg-type]
    if rng.random() < 0.2:
        raw = bytearray(path.read_bytes())
        for _ in range(int(rng.integers(1, 8))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        path.write_bytes(bytes(raw))


def check_dataset(ds: Any) -> str:
    """Empty when the Dataset is what search.data promises (float32 NHWC in range, labels 0..K-1)."""
    k = ds.num_classes
    if k < 2 or len(set(ds.class_names)) != k:
        return f"{k} classes {ds.class_names!r}"
    for name in ("x_train", "x_val", "x_rep"):
        x = getattr(ds, name)
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[-1] not in (1, 3) or not np.isfinite(x).all():
            return f"{name} is {x.dtype} {x.shape} (finite: {bool(np.isfinite(x).all())})"
    for name in ("y_train", "y_val"):
        y = getattr(ds, name)
        if y.dtype != np.int64 or (len(y) and (y.min() < 0 or y.max() >= k)):
            return f"{name} has labels outside 0..{k - 1}"
    if len(ds.x_train) != len(ds.y_train) or len(ds.x_val) != len(ds.y_val) or not len(ds.x_val):
        return "split sizes do not match"
    return ""


def run_npz_case(rng: np.random.Generator, folder: Path) -> Outcome:
    from search.data import load_npz

    path = folder / "data.npz"
    random_npz(rng, path)
    return classify(lambda: load_npz(path), check_dataset)


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 32)) + chunk(b"IEND", b"")


def random_image_bytes(rng: np.random.Generator, valid: bool = False) -> tuple[str, bytes]:
    """(suffix, bytes) of one image file: valid in some mode and format, or broken in some way."""
    from PIL import Image

    fmt, suffix = [("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp")][int(rng.integers(3))]
    modes = {
        "PNG": ["L", "RGB", "RGBA", "P", "1", "I;16", "LA"],
        "JPEG": ["L", "RGB", "CMYK"],
        "BMP": ["L", "RGB", "P", "1"],
    }
    mode = modes[fmt][int(rng.integers(len(modes[fmt])))]
    w, h = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    buf = io.BytesIO()
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(buf, fmt)
    data = buf.getvalue()
    roll = 0.0 if valid else rng.random()
    if roll < 0.5:
        return suffix, data
    if roll < 0.65:
        return suffix, data[: int(rng.integers(len(data)))]
    if roll < 0.8:
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 10))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        return suffix, bytes(raw)
    if roll < 0.9:
        side = [5_000, 20_000, 65_535, 0][int(rng.integers(4))]
        return ".png", _png_header(side, side)
    return suffix, rng.bytes(int(rng.integers(0, 200)))


def random_image_folder(rng: np.random.Generator, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    hostile = rng.random() < 0.6  # the other folders hold only valid images of mixed formats and modes
    for c in range(int(rng.integers(0, 4)) if hostile else 2):
        folder = root / f"class_{c}"
        folder.mkdir()
        for i in range(int(rng.integers(0, 9)) if hostile else 6):
            suffix, data = (
                random_image_bytes(rng, valid=not hostile) if rng.random() < 0.5 else (".png", _valid_png(rng, c))
            )
            (folder / f"img_{i}{suffix}").write_bytes(data)


def _valid_png(rng: np.random.Generator, c: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(40 * c, 40 * c + 40, size=(9, 7), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def run_image_case(rng: np.random.Generator, folder: Path) -> Outcome:
    from search.data import load_image_folder

    root = folder / "images"
    random_image_folder(rng, root)
    mode = _pick(rng, ["grayscale", "rgb"])
    return classify(lambda: load_image_folder(root, image_size=(8, 8), color_mode=mode), check_dataset)


# ------------------------------------------------------------------------------------------ .tflite

#: Field mutations of a decoded model: name -> (function of (model object, rng) that edits it).
FieldEdit = Callable[[Any, np.random.Generator], None]


def _pick(rng: np.random.Generator, items: Any) -> Any:
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _odd_int(rng: np.random.Generator) -> int:
    return int(_pick(rng, [-2, -1, 0, 1, 2, 3, 7, 64, 255, 999, 2**15, 2**31 - 1]))


def _edit_operator(m: Any, rng: np.random.Generator) -> None:
    op = _pick(rng, m.subgraphs[0].operators)
    roll = rng.random()
    if roll < 0.2:
        op.opcodeIndex = _odd_int(rng) % 2**32
    elif roll < 0.5:
        field = _pick(rng, ["inputs", "outputs"])
        values = list(getattr(op, field))
        if values and rng.random() < 0.8:
            values[int(rng.integers(len(values)))] = _odd_int(rng)
        elif values:
            values.pop()
        setattr(op, field, values)
    elif op.builtinOptions is not None and vars(op.builtinOptions):
        key = _pick(rng, vars(op.builtinOptions))
        setattr(op.builtinOptions, key, int(_pick(rng, [-2, -1, 0, 1, 2, 3, 7, 64, 127])))  # fits an int8 field


def _edit_tensor(m: Any, rng: np.random.Generator) -> None:
    t = _pick(rng, m.subgraphs[0].tensors)
    roll = rng.random()
    if roll < 0.3:
        shape = list(t.shape) if t.shape is not None else []
        if shape and rng.random() < 0.7:
            shape[int(rng.integers(len(shape)))] = _odd_int(rng)
        else:
            shape = shape[:-1] if shape and rng.random() < 0.5 else [*shape, _odd_int(rng)]
        t.shape = shape
    elif roll < 0.45:
        t.type = int(rng.integers(0, 20))
    elif roll < 0.6:
        t.buffer = _odd_int(rng) % 2**32
    elif t.quantization is not None:
        q = t.quantization
        if rng.random() < 0.5 and q.scale is not None:
            q.scale = [float(_pick(rng, [0.0, -1.0, np.nan, np.inf, 1e-30, 1e30]))] * max(1, len(q.scale))
        else:
            q.zeroPoint = [_odd_int(rng)] * int(rng.integers(0, 3))


def _edit_graph(m: Any, rng: np.random.Generator) -> None:
    sg = m.subgraphs[0]
    roll = rng.random()
    if roll < 0.4:
        sg.inputs = [_odd_int(rng)] if rng.random() < 0.7 else []
    elif roll < 0.6:
        sg.outputs = [_odd_int(rng)] if rng.random() < 0.7 else []
    elif roll < 0.8:
        buf = _pick(rng, m.buffers)
        if buf.data is not None and len(buf.data):
            buf.data = buf.data[: int(rng.integers(len(buf.data)))]
    else:
        sg.operators = list(sg.operators)[: int(rng.integers(len(sg.operators) + 1))]


FIELD_EDITS: dict[str, FieldEdit] = {"operator": _edit_operator, "tensor": _edit_tensor, "graph": _edit_graph}


def field_mutated(model: bytes, edits: list[tuple[str, int]]) -> bytes:
    """``model`` decoded, edited by each (edit name, seed) and packed again."""
    import flatbuffers

    from search.tflite_graph import _schema

    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    for name, seed in edits:
        FIELD_EDITS[name](m, np.random.default_rng(seed))
    builder = flatbuffers.Builder(0)
    try:
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    except (TypeError, ValueError, OverflowError):  # a value the field's type cannot hold: no edit
        return model
    return bytes(builder.Output())


def byte_mutated(model: bytes, changes: list[tuple[int, int]]) -> bytes:
    raw = bytearray(model)
    for offset, value in changes:
        raw[offset % len(raw)] = value % 256
    return bytes(raw)


def random_tflite(rng: np.random.Generator, bases: dict[str, bytes]) -> bytes:
    model = bases[_pick(rng, sorted(bases))]
    if rng.random() < 0.5:
        # Half the byte mutations land in the first 4 KB, where the tables and vectors are.
        span = len(model) if rng.random() < 0.5 else min(len(model), 4096)
        return byte_mutated(
            model, [(int(rng.integers(span)), int(rng.integers(256))) for _ in range(int(rng.integers(1, 5)))]
        )
    edits = [(_pick(rng, FIELD_EDITS), int(rng.integers(2**31))) for _ in range(int(rng.integers(1, 3)))]
    return field_mutated(model, edits)


def check_tflite(result: Any) -> str:
    arena, outputs = result
    if arena <= 0 or not np.isfinite(outputs).all():
        return f"arena {arena} B, outputs finite: {bool(np.isfinite(outputs).all())}"
    return ""


def measure_one(model: bytes) -> Outcome:
    """What ``tinyfront measure`` does with this model on stm32l552, then one TFLM run on a zero input."""
    from search.measure import measure_tflite
    from search.targets import get_target
    from search.tflm import run_tflm

    def load() -> tuple[int, np.ndarray]:
        m = measure_tflite(model, get_target("stm32l552"))
        shape = m.graph.inputs[0].shape if m.graph.inputs else (1,)  # no input: run_tflm says so
        return m.arena.arena_bytes, run_tflm(model, np.zeros((1, *shape[1:]), np.float32))

    return classify(load, check_tflite)


def _tflite_child() -> None:
    """Child entry point: pickled list of models on stdin; ("start", i) / ("outcome", i, kind, detail) on stdout."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    models: list[bytes] = pickle.load(sys.stdin.buffer)
    for i, model in enumerate(models):
        pickle.dump(("start", i), channel)
        channel.flush()
        outcome = measure_one(model)  # sent as plain strings: this module is __main__ here, not in the parent
        pickle.dump(("outcome", i, outcome.kind, outcome.detail), channel)
        channel.flush()


def run_tflite_cases(models: list[bytes], timeout_per_case: float = 60.0) -> list[Outcome]:
    """Measure each model in a child process (restarted after a crash); one Outcome per model."""
    outcomes: dict[int, Outcome] = {}
    todo = list(range(len(models)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    while todo:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--tflite-child"]
        try:
            proc = subprocess.run(
                cmd, input=pickle.dumps([models[i] for i in todo]), capture_output=True, env=env,
                timeout=30 + timeout_per_case * len(todo),
            )  # fmt: skip
            out, status = proc.stdout, f"status {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            out, status = exc.stdout or b"", "a timeout"
        stream, started = io.BytesIO(out), None
        while stream.tell() < len(out):
            try:
                message = pickle.load(stream)
            except Exception:  # cut short by the crash
                break
            if message[0] == "start":
                started = message[1]
            else:
                outcomes[todo[message[1]]] = Outcome(message[2], message[3])
        if started is None or todo[started] in outcomes:  # finished, or died outside any case
            for i in todo:
                outcomes.setdefault(i, Outcome("crash", f"fuzz child ended with {status} before this input"))
            break
        outcomes[todo[started]] = Outcome("crash", f"fuzz child ended with {status} on this input")
        todo = todo[started + 1 :]
    return [outcomes[i] for i in range(len(models))]


# ------------------------------------------------------------------------------------------ the run


def _summarise(name: str, outcomes: list[Outcome], seconds: float) -> str:
    counts = Counter(o.kind for o in outcomes)
    parts = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in KINDS)
    return f"{name:<13} tried {len(outcomes):>4}: {parts}  ({seconds:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget by this")
    parser.add_argument("--examples", type=int, default=3, help="show this many details per bad kind")
    parser.add_argument("--loaders", default="targets.toml,npz,image folder,tflite", help="comma-separated subset")
    parser.add_argument("--save-bad", type=Path, help="write .tflite inputs that crashed or raised uncaught here")
    parser.add_argument("--tflite-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tflite_child:
        _tflite_child()
        return 0
    budget = {"targets.toml": 600, "npz": 400, "image folder": 120, "tflite": 200}
    results: dict[str, list[Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="tinyfront-fuzz-") as tmp:
        folder = Path(tmp)
        chosen = [name.strip() for name in args.loaders.split(",")]
        for name in [n for n in ("targets.toml", "npz", "image folder") if n in chosen]:
            rng = np.random.default_rng([args.seed, len(name)])
            n = max(1, round(budget[name] * args.scale))
            start = time.perf_counter()
            outcomes = []
            for i in range(n):
                case = folder / f"{name.replace(' ', '_')}-{i}"
                case.mkdir()
                if name == "targets.toml":
                    outcomes.append(run_targets_case(random_targets_text(rng), case))
                elif name == "npz":
                    outcomes.append(run_npz_case(rng, case))
                else:
                    outcomes.append(run_image_case(rng, case))
            results[name] = outcomes
            print(_summarise(name, outcomes, time.perf_counter() - start), flush=True)
        if "tflite" not in chosen:
            pass
        elif MLPERF.is_dir():
            rng = np.random.default_rng([args.seed, 7])
            bases = {b: (MLPERF / b).read_bytes() for b in TFLITE_BASES}
            models = [random_tflite(rng, bases) for _ in range(max(1, round(budget["tflite"] * args.scale)))]
            start = time.perf_counter()
            results["tflite"] = run_tflite_cases(models)
            if args.save_bad:
                args.save_bad.mkdir(parents=True, exist_ok=True)
                for i, (model, outcome) in enumerate(zip(models, results["tflite"], strict=True)):
                    if outcome.kind in ("contained", "crash", "uncaught", "accepted_invalid"):
                        (args.save_bad / f"{outcome.kind}-{i}.tflite").write_bytes(model)
            print(_summarise("tflite", results["tflite"], time.perf_counter() - start), flush=True)
        else:
            print(f"tflite        skipped: MLPerf Tiny models not found at {MLPERF}")
    for name, outcomes in results.items():
        for kind in ("uncaught", "crash", "contained", "accepted_invalid"):
            bad = [o.detail for o in outcomes if o.kind == kind]
            examples: dict[str, str] = {}
            for detail in bad:  # grouped by what failed (exception type and place, or the invariant)
                what = detail.split(":")[0] + " at " + detail.rsplit("(", 1)[-1].rstrip(")")
                examples.setdefault(what if kind == "uncaught" else detail.split(" = ")[0], detail)
            groups = Counter(
                d.split(":")[0] + " at " + d.rsplit("(", 1)[-1].rstrip(")") if kind == "uncaught" else d.split(" = ")[0]
                for d in bad
            )
            for group, count in groups.most_common():
                example = examples[group]
                print(f"  {name} {kind} x{count}: {group}  e.g. {example[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
