"""Every TFLite Micro bundle built against a real TFLM tree, run on the host and on emulated Cortex-M.

For one candidate of each precision of the project's own tiny digits CNN (int8, float32,
int16x8, int8_qat) and for the MLPerf Tiny models in ``../shared/models/mlperf-tiny/``:

* the bundle builds with its own Makefile and its own CMake files on the host (reference
  kernels, ``../shared/tflm/reference``), runs, and prints output bytes equal to the
  ``tflite-micro`` Python interpreter's (integer models: exactly; float32: main.cc's tolerance);
* it cross-compiles with ``arm-none-eabi-gcc`` and CMSIS-NN (``../shared/tflm/cmsis_nn``) for
  Cortex-M4 (FPU), M7, M33 and M55 (Helium) into images for QEMU's MPS2/MPS3 boards, runs in
  ``qemu-system-arm`` with semihosting, allocates with exactly ``kTensorArenaSize`` and prints the
  same output bytes (float32: within main.cc's relative tolerance of 1e-4).

``libtflm.a`` is built once per (tree, core) and session, with only the kernels the tested
models use (``TFLM_KERNELS``), in ``$TINYFRONT_BUILD_CACHE`` or a session temp folder. The
bundles of DSP cores (M4, M7, M33) are exported for a Cortex-M4 target; the M55 bundle for a
Helium target (ek-ra8d1, Cortex-M85: the M55 build is its stand-in), so each arena margin is the
one of the core it runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MLPERF, SHARED
from test_export_tflm import make_candidates

pytestmark = pytest.mark.slow

TFLM = SHARED / "tflm"
MLPERF_MODELS = {
    "kws": "kws_ref_model.tflite",
    "vww_int8": "vww_96_int8.tflite",
    "vww_float": "vww_96_float.tflite",
    "ic_int8": "pretrainedResnet_quant.tflite",
    "ic_float": "pretrainedResnet.tflite",
    "ad_int8": "ad01_int8.tflite",
    "ad_float": "ad01_fp32.tflite",
    "person_detect": "person_detect.tflite",
}
OWN_MODELS = ("int8", "float32", "int16x8", "int8_qat")
MODELS = (*OWN_MODELS, *MLPERF_MODELS)
CORES = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505", "cortex-m55": "mps3-an547"}
DSP_TARGET, HELIUM_TARGET = "nucleo-l4r5zi", "ek-ra8d1"
FLOAT_TOLERANCE = 1e-4  # main.cc's relative tolerance for float32 outputs
#: The operator kernels libtflm.a is compiled with (TFLM_KERNELS): what the tested models use.
KERNELS = (
    "add",
    "conv",
    "depthwise_conv",
    "dequantize",
    "fully_connected",
    "pooling",
    "quantize",
    "reshape",
    "softmax",
)


def _missing() -> str | None:
    for tree in ("reference", "cmsis_nn"):
        if not (TFLM / tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
            return f"TFLite Micro tree {TFLM / tree} not found"
    for tool in ("make", "cmake", "arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="session")
def device_tools() -> None:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)


def _extra_candidates(root: Path, like: Path) -> dict[str, Path]:
    """int16x8 and int8_qat candidates of the fixture's tiny digits CNN, converted by search.convert."""
    folders = {name: root / name for name in ("int16x8", "int8_qat")}
    if (root / "done").exists():
        return folders
    import tf_keras as keras
    from sklearn.datasets import load_digits

    from search.convert import to_tflite
    from search.tflm import run_tflm
    from search.training import TrainSettings, quantize_aware

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:1432], y[1400:1432]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    qat = quantize_aware(model, x_train, y_train, TrainSettings(finetune_epochs=1, batch_size=32), keep_sparsity=False)
    models = {
        "int16x8": to_tflite(model, "int16x8", x_train[:100]),
        "int8_qat": to_tflite(qat, "int8_qat", x_train[:100]),
    }
    template = json.loads((like / "result.json").read_text())
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.tflite").write_bytes(models[name])
        np.savez(folder / "val_samples.npz", x=x_val, y=y_val)
        accuracy = float(np.mean(run_tflm(models[name], x_val).argmax(axis=1) == y_val))
        result = {**template, "spec": {**template["spec"], "precision": name}}
        result["figures"] = {
            "accuracy": {
                "value": accuracy,
                "unit": "fraction",
                "kind": "measured",
                "method": "TFLite Micro, 32 samples",
            }
        }
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    (root / "done").write_text("ok")
    return folders


def _unzip(bundle: Path, dest: Path) -> Path:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dest)
    return dest / bundle.stem


@pytest.fixture(scope="session")
def bundles(device_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(model, "dsp" | "helium") -> extracted bundle folder."""
    if not MLPERF.is_dir():
        pytest.skip(f"MLPerf Tiny models not found at {MLPERF}")
    from firmware_export import export_tflite_file
    from firmware_export._bundle import load_candidate
    from firmware_export.tflm import write_tflm_bundle
    from search.targets import get_target

    base = tmp_path_factory.getbasetemp()
    own = make_candidates(base / "export_candidates")
    own.update(_extra_candidates(base / "device_candidates", own["int8"]))
    out = tmp_path_factory.mktemp("device_bundles")
    found: dict[tuple[str, str], Path] = {}
    for kind, target_name in (("dsp", DSP_TARGET), ("helium", HELIUM_TARGET)):
        target = get_target(target_name)
        for name in OWN_MODELS:
            zip_path = out / kind / f"{name}.zip"
            zip_path.parent.mkdir(parents=True, exist_ok=True)
            write_tflm_bundle(load_candidate(own[name]), zip_path, target)
            found[(name, kind)] = _unzip(zip_path, zip_path.parent)
        for name, file in MLPERF_MODELS.items():
            zip_path = out / kind / f"{name}.zip"
            export_tflite_file(MLPERF / file, zip_path, target=target)
            found[(name, kind)] = _unzip(zip_path, zip_path.parent)
    from firmware_export.device import kernels_for_ops

    ops: set[str] = set()
    for folder in found.values():
        ops.update(json.loads((folder / "metadata.json").read_text())["bundle"]["ops"])
    assert set(kernels_for_ops(ops)) <= set(KERNELS), f"a tested model needs a kernel outside {KERNELS}"
    return found


@pytest.fixture(scope="session")
def library(device_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """core ("host" or a Cortex-M core) -> libtflm.a with the tested models' kernels, built once."""
    from firmware_export.device import build_library, get_board

    kernels = list(KERNELS)
    env = os.environ.get("TINYFRONT_BUILD_CACHE")
    cache = Path(env) if env else tmp_path_factory.mktemp("tflm_build_cache")
    built: dict[str, Path] = {}
    seconds: dict[str, float] = {}

    def get(core: str) -> Path:
        if core not in built:
            start = time.monotonic()
            if core == "host":
                built[core] = build_library(TFLM / "reference", None, cache, kernels=kernels)
            else:
                built[core] = build_library(TFLM / "cmsis_nn", get_board(CORES[core]), cache, kernels=kernels)
            seconds[core] = time.monotonic() - start
        return built[core]

    yield get
    lines = [f"libtflm.a for {core}: {s:.0f} s (kernels: {' '.join(kernels)})" for core, s in seconds.items()]
    _report_lines.extend(lines)


_report_lines: list[str] = []
_table: list[tuple[str, str, int, int | None, str]] = []


@pytest.fixture(scope="session", autouse=True)
def _device_report(request: pytest.FixtureRequest) -> Iterator[None]:
    import resource

    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    yield
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if not _table and not _report_lines:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["", "device checks (QEMU: emulated, functionally exact, not cycle-accurate):", *_report_lines]
    lines.append(f"{'model':<14} {'where':<12} {'arena stated':>12} {'arena used':>10}  output")
    for model, where, stated, used, verdict in _table:
        lines.append(f"{model:<14} {where:<12} {stated:>12,} {used if used is not None else '-':>10}  {verdict}")
    lines.append(
        f"wall time of this file's session: {time.monotonic() - start:.0f} s; CPU time of its compilers and "
        f"emulators: {child_cpu:.0f} s (about {child_cpu / 2:.0f} s of wall time on 2 idle cores)"
    )
    report = os.environ.get("TINYFRONT_DEVICE_REPORT")
    if report:
        Path(report).write_text("\n".join(lines) + "\n")
    if reporter is not None:
        for line in lines:
            reporter.write_line(line)


def _expected(folder: Path) -> tuple[bytes, str, int]:
    """The Python interpreter's raw output bytes, the output dtype and kTensorArenaSize of a bundle."""
    bundle = json.loads((folder / "metadata.json").read_text())["bundle"]
    dtype = bundle["output"]["dtype"]
    raw = np.asarray(bundle["test_input"]["host_output_raw"], dtype=dtype).tobytes()
    return raw, dtype, int(bundle["arena"]["tensor_arena_size"])


def _compare(run: Any, folder: Path, model: str) -> str:
    """Assert the run allocated with kTensorArenaSize and reproduced the output; the table's verdict."""
    expected, dtype, arena = _expected(folder)
    assert run.arena_size == arena, f"{model} on {run.where}: ran with {run.arena_size}, kTensorArenaSize {arena}"
    assert run.arena_used is not None and 0 < run.arena_used <= arena, run.text
    assert run.output is not None and len(run.output) == len(expected), run.text
    if run.output == expected:
        verdict = "bit-exact"
    else:
        assert dtype == "float32", f"{model} on {run.where}: integer output differs from the Python interpreter's"
        got = np.frombuffer(run.output, np.float32)
        want = np.frombuffer(expected, np.float32)
        rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))
        assert rel <= FLOAT_TOLERANCE, f"{model} on {run.where}: max relative difference {rel:.2e}"
        verdict = f"within {FLOAT_TOLERANCE:g} (max rel. diff {rel:.1e})"
    assert run.passed, run.reason
    _table.append((model, run.where, arena, run.arena_used, verdict))
    report = os.environ.get("TINYFRONT_DEVICE_REPORT")
    if report:  # row by row too, so an interrupted session still leaves its table
        with open(report + ".rows", "a") as rows:
            rows.write(f"{model}\t{run.where}\t{arena}\t{run.arena_used}\t{verdict}\n")
    return verdict


def _qemu_cases() -> Iterator[Any]:
    for core in ("cortex-m4", "cortex-m55", "cortex-m33", "cortex-m7"):  # one library after the other
        for model in MODELS:  # int16x8 too: search.convert quantises its dense layer per tensor for CMSIS-NN
            yield pytest.param(model, core, id=f"{model}-{core}")


@pytest.mark.parametrize(("model", "core"), list(_qemu_cases()))
def test_cortex_m_image_runs_bit_exact_in_qemu(
    model: str, core: str, bundles: dict[tuple[str, str], Path], library: Callable[[str], Path]
) -> None:
    from firmware_export.device import build_bundle, get_board, run_in_qemu

    board = get_board(CORES[core])
    folder = bundles[(model, "helium" if core == "cortex-m55" else "dsp")]
    lib = library(core)
    # The Makefile for every core; the CMake files too for the Cortex-M4 (same flags, other build system).
    systems = ("make", "cmake") if core == "cortex-m4" else ("make",)
    for system in systems:
        image = build_bundle(folder, board, lib, tree=TFLM / "cmsis_nn", system=system)
        run = run_in_qemu(image, board)
        assert run.where == board.name
        _compare(run, folder, model)


@pytest.mark.parametrize("model", MODELS)
def test_host_build_with_make_and_cmake(
    model: str, bundles: dict[tuple[str, str], Path], library: Callable[[str], Path]
) -> None:
    from firmware_export.device import build_bundle, run_host

    folder = bundles[(model, "dsp")]
    lib = library("host")
    for system in ("make", "cmake"):
        exe = build_bundle(folder, None, lib, tree=TFLM / "reference", system=system)
        run = run_host(exe)
        _compare(run, folder, model)
        assert run.where == "host"


def test_a_crash_comes_back_as_a_reason(
    bundles: dict[tuple[str, str], Path], library: Callable[[str], Path], tmp_path: Path
) -> None:
    """An image whose arena is too small fails AllocateTensors: status 1 and a reason, no exception."""
    from firmware_export.device import build_bundle, get_board, run_in_qemu

    folder = tmp_path / "kws"
    shutil.copytree(bundles[("kws", "dsp")], folder, ignore=shutil.ignore_patterns("build"))
    settings = folder / "model_settings.h"
    text = settings.read_text()
    _, _, arena = _expected(folder)
    settings.write_text(text.replace(f"kTensorArenaSize = {arena};", "kTensorArenaSize = 4096;"))
    board = get_board("mps2-an386")
    run = run_in_qemu(build_bundle(folder, board, library("cortex-m4"), tree=TFLM / "cmsis_nn"), board)
    assert run.status == 1 and not run.passed
    assert run.reason is not None and "status 1" in run.reason and "AllocateTensors() failed" in run.text


def test_export_build_from_the_cli(
    device_tools: None,
    library: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``export --build`` (Python API, the CLI's path): prebuilt library and QEMU image in the zip, verified,
    and said so; the CLI's --build errors are one line."""
    from explorer.cli import main
    from firmware_export import BuildRequest, export_tflite_file
    from search.targets import get_target

    lib = library("cortex-m4")  # the session's library: the export reuses it (same tree, flags, kernels)
    model = MLPERF / MLPERF_MODELS["kws"]
    out = tmp_path / "kws.zip"
    request = BuildRequest(tflm_dir=TFLM / "cmsis_nn", cache_dir=lib.parent.parent, kernels=KERNELS)
    export_tflite_file(model, out, target=get_target(DSP_TARGET), build=request)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        readme = zf.read("kws/README.md").decode()
        meta = json.loads(zf.read("kws/metadata.json"))
        image = zf.read("kws/prebuilt/cortex-m4/tinyfront_model_mps2-an386.elf")
        archive = zf.read("kws/prebuilt/cortex-m4/libtinyfront_model.a")
    assert {"kws/qemu/tinyfront_startup.c", "kws/qemu/mps2-an386.ld", "kws/qemu/tinyfront_sections.ld"} <= names
    assert image[:4] == b"\x7fELF" and archive[:8] == b"!<arch>\n"
    assert b"model_init" in archive and b"g_model_data" in archive and b"MicroInterpreter" in archive
    verification = meta["bundle"]["verification"]
    assert verification["status"] == "built and verified: bit-exact on mps2-an386 (QEMU, cortex-m4, CMSIS-NN)"
    assert verification["arena_size"] == meta["bundle"]["arena"]["tensor_arena_size"]
    assert 0 < verification["arena_used"] <= verification["arena_size"]
    assert "**built and verified: bit-exact on mps2-an386" in readme and "exported without `--build`" not in readme
    assert meta["figures"]["flash_kb"]["kind"] == "estimated" and meta["figures"]["arena_bytes"]["kind"] == "measured"

    # The image in the zip runs as it is.
    from firmware_export.device import get_board, run_in_qemu

    (tmp_path / "image.elf").write_bytes(image)
    assert run_in_qemu(tmp_path / "image.elf", get_board("mps2-an386")).passed

    # Without --build the README says what was not checked; missing tools give one line and exit 1.
    args = ["export", "--tflite", str(model), "--target", DSP_TARGET, "--format", "tflm", "-o", str(out)]
    plain = tmp_path / "plain.zip"
    assert main(["export", "--tflite", str(model), "--format", "tflm", "-o", str(plain)]) == 0
    with zipfile.ZipFile(plain) as zf:
        assert "exported without `--build`" in zf.read("plain/README.md").decode()
    capsys.readouterr()
    monkeypatch.delenv("TINYFRONT_TFLM_DIR", raising=False)
    assert main([*args, "--force", "--build"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no TFLite Micro tree given" in err
    assert main([*args, "--force", "--build", "--tflm-dir", str(TFLM / "reference")]) == 1
    assert "not a CMSIS-NN tree" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler, no QEMU
    assert main([*args, "--force", "--build", "--tflm-dir", str(TFLM / "cmsis_nn")]) == 1
    assert "arm-none-eabi-gcc is not on PATH" in capsys.readouterr().err


def test_cmake_without_a_tree_fails_clearly_offline(device_tools: None, tmp_path: Path) -> None:
    """No TFLM_DIR: the CMake file would fetch tflite-micro at the pinned commit (not testable here,
    there is no internet); offline, the configure stops with a message that says what to pass."""
    from firmware_export.device._tools import run

    online = run(["git", "ls-remote", "https://github.com/tensorflow/tflite-micro.git", "HEAD"], timeout=60, what="git")
    if online.status == 0:
        pytest.skip("github.com is reachable: the configure would fetch tflite-micro (this test checks offline)")
    folder = tmp_path / "bundle"
    folder.mkdir()
    from firmware_export._templates import render

    cmake = render(
        "tflm/CMakeLists.txt",
        {
            "version": "test", "target_name": "t", "core": "cortex-m4", "default_platform": "host",
            "cpu": "cortex-m4", "float_flags": "", "tflm_commit": "90b983c2b3f1480642e040bbd2ddb37b998f3424",
        },
    )  # fmt: skip
    (folder / "CMakeLists.txt").write_text(cmake)
    done = run(
        ["cmake", "-S", str(folder), "-B", str(folder / "build")],
        timeout=120,
        what="cmake configure",
        env={"TFLM_DIR": "", "GIT_TERMINAL_PROMPT": "0"},
    )
    text = " ".join((done.stdout + done.stderr).split())  # CMake wraps its messages
    assert done.status != 0
    assert "TFLM_DIR is not set and https://github.com/tensorflow/tflite-micro.git cannot be reached" in text
    assert "fetch tflite-micro at 90b983c2b3f1480642e040bbd2ddb37b998f3424: pass -DTFLM_DIR=" in text, text[-2000:]


def test_parse_run_reads_what_main_cc_prints() -> None:
    """No tools needed: the harness's reading of main.cc's lines (hex chunks of 64 bytes, arena, verdict)."""
    from firmware_export.device import parse_run

    raw = bytes(range(200))
    lines = [f"output hex {o}: {raw[o : o + 64].hex()}" for o in range(0, 200, 64)]
    text = "\r\n".join(["arena: 22820 of 25552 bytes used", *lines, "inference time: 7699 us", "tinyfront check: PASS"])
    run = parse_run("mps2-an386", 0, text)
    assert (run.arena_used, run.arena_size, run.time_us, run.output) == (22820, 25552, 7699, raw)
    assert run.passed and run.reason is None
    crashed = parse_run("mps3-an547", 3, "arena: 1 of 2 bytes used\r\ntinyfront fault: HardFault\r\n")
    assert not crashed.passed and crashed.output is None
    assert crashed.reason == "the program crashed on mps3-an547 (HardFault)"
    failed = parse_run("host", 2, text.replace("PASS", "FAIL"))
    assert not failed.passed and failed.reason is not None and "status 2" in failed.reason


def test_kernels_and_boards() -> None:
    from firmware_export.device import BOARDS, DeviceError, board_for_core, kernels_for_ops, qemu_command
    from search.errors import ExportError

    ops = ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    assert kernels_for_ops(ops) == ["conv", "depthwise_conv", "fully_connected", "pooling", "reshape", "softmax"]
    assert {b.core: b.name for b in BOARDS.values()} == {core: board for core, board in CORES.items()}
    assert board_for_core("cortex-m55").float_flags == "-mfpu=auto -mfloat-abi=hard"
    with pytest.raises(DeviceError, match="no QEMU board emulates core 'cortex-m85'") as info:
        board_for_core("cortex-m85")
    assert isinstance(info.value, ExportError)
    cmd = qemu_command(Path("x.elf"), BOARDS["mps2-an505"])
    assert cmd[:5] == ["qemu-system-arm", "-M", "mps2-an505", "-cpu", "cortex-m33"]
    assert "enable=on,target=native" in cmd and cmd[-2:] == ["-kernel", "x.elf"]
