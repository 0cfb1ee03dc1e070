"""Measure the flash that TFLite Micro's interpreter and each operator kernel take, from real links.

Run here, never at search time (it needs ``arm-none-eabi-gcc`` and a TFLM source tree)::

    python -m search.flash_calibrate --tflm-dir ../shared/tflm/cmsis_nn --build-dir /tmp/tflm-size \\
        --cores cortex-m4 cortex-m33

For each core it (1) compiles the tree into ``libtflm.a`` with ``-Os -ffunction-sections
-fdata-sections`` and CMSIS-NN, (2) links a small program with ``--specs=nosys.specs
--specs=nano.specs -Wl,--gc-sections``: the interpreter alone (``GetModel``, an empty
``MicroMutableOpResolver``, ``MicroInterpreter``, ``AllocateTensors``, ``Invoke``, ``MicroPrintf``),
then the same with ONE registration per operator variant, and (3) reads each link's map file.
An operator's code is the set of input sections its link holds beyond the interpreter link; the
estimate of an op set (:mod:`search.flash`) is the interpreter link plus the size of the UNION of
its ops' section sets, so code two kernels share (CMSIS-NN helpers, requantisation, the reference
fallbacks) is counted once. A few real op sets are linked too, to state the union's residual.
The result is written to ``search/calibration/tflm_code_size.json`` with the tree commit, the
compiler version, the flags and the date.

The same link helpers serve ``benchmarks/flash_vs_link.py``, which links whole models.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from search.errors import OneLineParser, TinyfrontError

log = logging.getLogger(__name__)

#: The TFLM tree the calibration data comes from (../shared/tflm/README.md).
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"

#: Floating-point / vector flags per core (CMSIS-NN picks DSP or MVE paths from the macros these set).
CORE_FLAGS: dict[str, str] = {
    "cortex-m4": "-mfpu=fpv4-sp-d16 -mfloat-abi=hard",
    "cortex-m33": "-mfpu=fpv5-sp-d16 -mfloat-abi=hard",
    "cortex-m7": "-mfpu=fpv5-d16 -mfloat-abi=hard",
    "cortex-m55": "-mfloat-abi=hard",
}

OPT = "-Os"
DEFINES = "-DTF_LITE_STATIC_MEMORY -DCMSIS_NN -DTF_LITE_MCU_DEBUG_LOG -DPROJECT_GENERATION"
LINK_FLAGS = "--specs=nosys.specs --specs=nano.specs -Wl,--gc-sections"
#: Arena of the calibration program: .bss, so it takes no flash; subtracted from the static RAM.
ARENA_BYTES = 1024

#: Operator variants calibrated: (key, MicroMutableOpResolver call). The key is ``OP`` for the
#: generic registration and ``OP:VARIANT`` for ``Register_OP_VARIANT()`` (kernels/*.h of the tree).
VARIANTS: tuple[tuple[str, str], ...] = (
    ("CONV_2D", "AddConv2D()"),
    ("CONV_2D:INT8", "AddConv2D(tflite::Register_CONV_2D_INT8())"),
    ("CONV_2D:INT16", "AddConv2D(tflite::Register_CONV_2D_INT16())"),
    ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D()"),
    ("DEPTHWISE_CONV_2D:INT8", "AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT8())"),
    ("DEPTHWISE_CONV_2D:INT16", "AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT16())"),
    ("FULLY_CONNECTED", "AddFullyConnected()"),
    ("FULLY_CONNECTED:INT8", "AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())"),
    ("FULLY_CONNECTED:INT16", "AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT16())"),
    ("AVERAGE_POOL_2D", "AddAveragePool2D()"),
    ("AVERAGE_POOL_2D:INT8", "AddAveragePool2D(tflite::Register_AVERAGE_POOL_2D_INT8())"),
    ("AVERAGE_POOL_2D:INT16", "AddAveragePool2D(tflite::Register_AVERAGE_POOL_2D_INT16())"),
    ("MAX_POOL_2D", "AddMaxPool2D()"),
    ("MAX_POOL_2D:INT8", "AddMaxPool2D(tflite::Register_MAX_POOL_2D_INT8())"),
    ("MAX_POOL_2D:INT16", "AddMaxPool2D(tflite::Register_MAX_POOL_2D_INT16())"),
    ("SOFTMAX", "AddSoftmax()"),
    ("SOFTMAX:INT8", "AddSoftmax(tflite::Register_SOFTMAX_INT8())"),
    ("SOFTMAX:INT8_INT16", "AddSoftmax(tflite::Register_SOFTMAX_INT8_INT16())"),
    ("SOFTMAX:INT16", "AddSoftmax(tflite::Register_SOFTMAX_INT16())"),
    ("ADD", "AddAdd()"),
    ("ADD:INT8", "AddAdd(tflite::Register_ADD_INT8())"),
    ("ADD:INT16", "AddAdd(tflite::Register_ADD_INT16())"),
    ("MUL", "AddMul()"),
    ("MUL:INT8", "AddMul(tflite::Register_MUL_INT8())"),
    ("PAD", "AddPad()"),
    ("PAD:INT8", "AddPad(tflite::Register_PAD_INT8())"),
    ("TRANSPOSE_CONV", "AddTransposeConv()"),
    ("TRANSPOSE_CONV:INT8", "AddTransposeConv(tflite::Register_TRANSPOSE_CONV_INT8())"),
    ("BATCH_MATMUL", "AddBatchMatMul()"),
    ("BATCH_MATMUL:INT8", "AddBatchMatMul(tflite::Register_BATCH_MATMUL_INT8())"),
    ("TRANSPOSE", "AddTranspose()"),
    ("TRANSPOSE:INT8", "AddTranspose(tflite::Register_TRANSPOSE_INT8())"),
    ("MAXIMUM", "AddMaximum()"),
    ("MINIMUM", "AddMinimum()"),
    ("RESHAPE", "AddReshape()"),
    ("SQUEEZE", "AddSqueeze()"),
    ("EXPAND_DIMS", "AddExpandDims()"),
    ("MEAN", "AddMean()"),
    ("SUB", "AddSub()"),
    ("QUANTIZE", "AddQuantize()"),
    ("DEQUANTIZE", "AddDequantize()"),
    ("RELU", "AddRelu()"),
    ("RELU6", "AddRelu6()"),
    ("LEAKY_RELU", "AddLeakyRelu()"),
    ("HARD_SWISH", "AddHardSwish()"),
    ("LOGISTIC", "AddLogistic()"),
    ("TANH", "AddTanh()"),
    ("CONCATENATION", "AddConcatenation()"),
    ("STRIDED_SLICE", "AddStridedSlice()"),
    ("SHAPE", "AddShape()"),
    ("PACK", "AddPack()"),
    ("UNPACK", "AddUnpack()"),
    ("SPLIT", "AddSplit()"),
)

#: Real op sets linked to check the union estimate (the resolvers of typical int8 / float models).
CHECK_SETS: tuple[tuple[str, ...], ...] = (
    (
        "CONV_2D:INT8",
        "DEPTHWISE_CONV_2D:INT8",
        "AVERAGE_POOL_2D:INT8",
        "RESHAPE",
        "FULLY_CONNECTED:INT8",
        "SOFTMAX:INT8",
    ),
    ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"),
    ("CONV_2D:INT8", "ADD:INT8", "MEAN", "FULLY_CONNECTED:INT8", "SOFTMAX:INT8", "QUANTIZE", "DEQUANTIZE"),
    ("CONV_2D:INT16", "DEPTHWISE_CONV_2D:INT16", "FULLY_CONNECTED:INT16", "SOFTMAX:INT16", "RESHAPE", "MEAN"),
    ("FULLY_CONNECTED:INT8", "SOFTMAX:INT8", "RESHAPE", "MAX_POOL_2D:INT8", "PAD:INT8", "MUL:INT8", "RELU"),
)

_LIB_MAKEFILE = r"""# libtflm.a for one Cortex-M core, written by search/flash_calibrate.py
TFLM_DIR ?=
CPU ?=
FLOAT_FLAGS ?=
BUILD_DIR ?=
INCLUDES := -I$(TFLM_DIR) -I$(TFLM_DIR)/third_party -I$(TFLM_DIR)/third_party/flatbuffers/include \
  -I$(TFLM_DIR)/third_party/gemmlowp -I$(TFLM_DIR)/third_party/ruy -I$(TFLM_DIR)/third_party/kissfft \
  -I$(TFLM_DIR)/third_party/kissfft/tools -I$(TFLM_DIR)/third_party/cmsis -I$(TFLM_DIR)/third_party/cmsis_nn \
  -I$(TFLM_DIR)/third_party/cmsis_nn/Include -I$(TFLM_DIR)/third_party/cmsis/CMSIS/Core/Include
COMMON_FLAGS := {opt} {defines} -fno-unwind-tables -ffunction-sections -fdata-sections \
  -fmessage-length=0 -mcpu=$(CPU) -mthumb $(FLOAT_FLAGS) -mlittle-endian -funsigned-char -fomit-frame-pointer -w
CXXFLAGS := -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics $(COMMON_FLAGS)
CFLAGS := -std=c17 $(COMMON_FLAGS)
SRCS := {sources}
OBJS := $(patsubst $(TFLM_DIR)/%,$(BUILD_DIR)/obj/%.o,$(SRCS))
$(BUILD_DIR)/libtflm.a: $(OBJS)
	rm -f $@
	arm-none-eabi-ar rcs $@ $(OBJS)
$(BUILD_DIR)/obj/%.cc.o: $(TFLM_DIR)/%.cc
	@mkdir -p $(dir $@)
	arm-none-eabi-g++ $(CXXFLAGS) $(INCLUDES) -c $< -o $@
$(BUILD_DIR)/obj/%.c.o: $(TFLM_DIR)/%.c
	@mkdir -p $(dir $@)
	arm-none-eabi-gcc $(CFLAGS) $(INCLUDES) -c $< -o $@
"""

#: Kernel sources of operators no calibrated link registers (tensorflow/lite/micro/kernels/): left out
#: of libtflm.a to halve its build time. A static library only contributes the members a link
#: references, so leaving them out changes no link (a link that needed one would fail, not shrink).
UNUSED_KERNELS = frozenset(
    """add_n arg_min_max assign_variable batch_to_space_nd broadcast_args broadcast_to call_once cast ceil
    circular_buffer circular_buffer_common comparisons cumsum decode decode_state decode_state_huffman
    decode_state_lut decode_state_prune depth_to_space detection_postprocess div dynamic_update_slice
    elementwise elu embedding_lookup ethosu exp fill floor floor_div floor_mod gather gather_nd if
    kernel_runner l2_pool_2d l2norm log_softmax logical logical_common lstm_eval lstm_eval_common mirror_pad
    neg prelu prelu_common read_variable resize_bilinear resize_nearest_neighbor reverse round select slice
    space_to_batch_nd space_to_depth split_v squared_difference svdf svdf_common unidirectional_sequence_lstm
    var_handle while zeros_like""".split()
)


def library_sources(tflm_dir: Path, members: set[str] | None = None) -> list[Path]:
    """The tree's C/C++ sources under tensorflow/ and third_party/ (not signal/, not the test helpers),
    without :data:`UNUSED_KERNELS`; with ``members`` (archive member names such as ``conv.cc.o``), only
    the tensorflow/ sources those name (third_party/ C sources are kept: cores differ in the CMSIS-NN
    functions they call)."""
    found = []
    for top in ("tensorflow", "third_party"):
        for path in sorted((tflm_dir / top).rglob("*")):
            if path.suffix not in (".c", ".cc") or path.name.startswith("test_helper"):
                continue
            if "micro/kernels" in path.as_posix() and path.stem in UNUSED_KERNELS:
                continue
            if members is not None and top == "tensorflow" and path.name + ".o" not in members:
                continue
            found.append(path)
    return found


#: The TFLM headers of the probe, precompiled once per core (a probe then compiles in a fraction
#: of a second instead of parsing the flatbuffer schema and kernel headers every time).
_PROBE_HEADER = """#include <cstdint>

#include "tensorflow/lite/micro/kernels/pad.h"        // Register_PAD_INT8 (not pulled in by the resolver)
#include "tensorflow/lite/micro/kernels/transpose.h"  // Register_TRANSPOSE_INT8 (idem)
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
"""

_PROGRAM = """// Size probe written by search/flash_calibrate.py: the interpreter plus the registrations below.
#include "tflm_probe.h"

extern "C" const unsigned char g_model_data[];
extern "C" const unsigned int g_model_data_len;
constexpr int kArenaSize = {arena};
alignas(16) static uint8_t g_arena[kArenaSize];

int main() {{
  const tflite::Model* model = tflite::GetModel(g_model_data);
  static tflite::MicroMutableOpResolver<{count}> resolver;  // static, as in the exported bundle's main.cc
{registrations}
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {{
    MicroPrintf("AllocateTensors failed (model of %u bytes)", g_model_data_len);
    return 1;
  }}
  if (interpreter.Invoke() != kTfLiteOk) {{
    MicroPrintf("Invoke failed");
    return 2;
  }}
  MicroPrintf("output byte %d", interpreter.output(0)->data.int8[0]);
  return 0;
}}
"""

_MODEL_ASM = """/* The model as TFLM's g_model_data[] (alignas(16)) and g_model_data_len, from the .tflite file. */
  .section .rodata.g_model_data,"a"
  .balign 16
  .global g_model_data
g_model_data:
  .incbin "{path}"
  .section .rodata.g_model_data_len,"a"
  .balign 4
  .global g_model_data_len
g_model_data_len:
  .word {length}
"""


class CalibrationError(TinyfrontError):
    """A calibration build or link failed."""


@dataclass(frozen=True)
class LinkResult:
    """Sizes of one linked image: Berkeley ``size`` figures and the map file's input sections."""

    text: int  # .text + .rodata + everything else read-only in flash (arm-none-eabi-size "text")
    data: int  # initialised data: in flash and copied to RAM
    bss: int
    sections: dict[str, int] = field(repr=False)  # "<section> <archive(member)>" -> bytes (flash only)

    @property
    def flash(self) -> int:
        return self.text + self.data

    def split(self) -> dict[str, int]:
        """Flash bytes by origin: tflm (libtflm.a), c_runtime (newlib, libgcc, libstdc++), startup, application."""
        out = {"tflm": 0, "c_runtime": 0, "startup": 0, "application": 0}
        for key, size in self.sections.items():
            origin = key.split(" ", 1)[1]
            if "libtflm.a" in origin:
                out["tflm"] += size
            elif re.search(r"lib(c|g|m|gcc|stdc\+\+|supc\+\+|nosys)(_nano)?\.a", origin):
                out["c_runtime"] += size
            elif re.search(r"crt\w*\.o", origin):
                out["startup"] += size
            else:
                out["application"] += size
        return out


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 3600) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CalibrationError(f"{cmd[0]} failed to run: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise CalibrationError(f"{' '.join(cmd[:3])} ... exited {done.returncode}: " + " | ".join(tail))
    return done.stdout


def compiler_version() -> str:
    return _run(["arm-none-eabi-gcc", "--version"]).splitlines()[0].strip()


def linked_members(build_dir: Path, core: str) -> set[str]:
    """The libtflm.a members any link made for ``core`` under ``build_dir`` pulled in (from the map files)."""
    found: set[str] = set()
    for folder in (build_dir / f"links-{core}", build_dir / f"bench-{core}"):
        for path in folder.rglob("image.map") if folder.is_dir() else []:
            found.update(re.findall(r"libtflm\.a\(([^)]+)\)", path.read_text()))
    return found


def build_library(tflm_dir: Path, build_dir: Path, core: str, jobs: int = 2, members: set[str] | None = None) -> Path:
    """Compile ``tflm_dir`` into ``build_dir/build-<core>/libtflm.a`` (incremental; ``nice -n 10 make``),
    only ``members`` of tensorflow/ when given (see :func:`library_sources`)."""
    if core not in CORE_FLAGS:
        raise CalibrationError(f"core must be one of {sorted(CORE_FLAGS)}, got {core!r}")
    if not (tflm_dir / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise CalibrationError(f"{tflm_dir} is not a TFLite Micro tree (no tensorflow/lite/micro/micro_interpreter.h)")
    if shutil.which("arm-none-eabi-gcc") is None:
        raise CalibrationError("arm-none-eabi-gcc is not on PATH (Debian: apt-get install gcc-arm-none-eabi)")
    build_dir.mkdir(parents=True, exist_ok=True)
    makefile = build_dir / f"Makefile.lib-{core}"
    sources = " \\\n  ".join(str(p.resolve()) for p in library_sources(tflm_dir, members))
    makefile.write_text(_LIB_MAKEFILE.replace("{opt}", OPT).replace("{defines}", DEFINES).replace("{sources}", sources))
    out = build_dir / f"build-{core}"
    _run(
        ["nice", "-n", "10", "make", "-f", str(makefile), f"-j{jobs}", f"TFLM_DIR={tflm_dir.resolve()}",
         f"CPU={core}", f"FLOAT_FLAGS={CORE_FLAGS[core]}", f"BUILD_DIR={out}"],
        cwd=build_dir,
    )  # fmt: skip
    return out / "libtflm.a"


def _parse_map(text: str) -> dict[str, int]:
    """Input sections placed in flash-resident output sections: ``"<section> <origin>" -> bytes``."""
    start = text.find("Linker script and memory map")
    lines = text[start:].splitlines() if start >= 0 else []
    out: dict[str, int] = {}
    in_flash = False
    pending: str | None = None
    out_re = re.compile(r"^(\.[\w.]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+")
    one_line = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    cont = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    for line in lines:
        m = out_re.match(line)
        if m or (line and not line.startswith(" ") and line.startswith(".")):
            name = line.split()[0]
            in_flash = not name.startswith((".bss", ".heap", ".stack", ".noinit", ".debug", ".comment", ".ARM.attr"))
            in_flash = in_flash and not name.startswith((".stab", ".gnu"))
            pending = None
            continue
        if not in_flash:
            continue
        m1 = one_line.match(line)
        if m1 and not m1.group(1).startswith("0x") and m1.group(1) not in ("*fill*", "*(COMMON)"):
            _add(out, m1.group(1), int(m1.group(3), 16), m1.group(4))
            pending = None
            continue
        stripped = line.strip()
        if line.startswith(" .") and len(stripped.split()) == 1:
            pending = stripped
            continue
        m2 = cont.match(line)
        if m2 and pending is not None:
            _add(out, pending, int(m2.group(2), 16), m2.group(3))
            pending = None
    return out


def _add(out: dict[str, int], section: str, size: int, origin: str) -> None:
    if size == 0 or section == "COMMON":
        return
    origin = re.sub(r"^.*/", "", origin.strip())  # archive or object file name without its folder
    key = f"{section} {origin}"
    out[key] = out.get(key, 0) + size


def link_program(
    lib: Path,
    tflm_dir: Path,
    work: Path,
    core: str,
    registrations: list[str],
    model: Path | None = None,
    arena: int = ARENA_BYTES,
) -> LinkResult:
    """Link the size probe with ``registrations`` (resolver calls) and ``model`` (a .tflite; 16 zero
    bytes when None) against ``lib`` into ``work``; return its sizes."""
    work.mkdir(parents=True, exist_ok=True)
    regs = "\n".join(f"  resolver.{r};" for r in registrations)
    if model is None:
        model = work / "empty.tflite"
        model.write_bytes(bytes(16))
    cpu = ["-mcpu=" + core, "-mthumb", *CORE_FLAGS[core].split()]
    if _write_if_changed(
        work / "main.cc", _PROGRAM.format(arena=arena, count=max(1, len(registrations)), registrations=regs)
    ):
        pch = _probe_header(tflm_dir, work.parent.parent / f"pch-{core}", core)
        _run(
            ["arm-none-eabi-g++", *_compile_flags(core, tflm_dir), f"-I{pch}", "-c", "main.cc", "-o", "main.o"],
            cwd=work,
        )
    if _write_if_changed(work / "model_data.S", _MODEL_ASM.format(path=model.resolve(), length=model.stat().st_size)):
        _run(["arm-none-eabi-gcc", *cpu, "-c", "model_data.S", "-o", "model_data.o"], cwd=work)
    return _link(work, core, ["main.o", "model_data.o"], lib)


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it holds it already and its object exists; True when written."""
    if path.is_file() and path.read_text() == text and path.with_suffix(".o").is_file():
        return False
    path.write_text(text)
    return True


def _probe_header(tflm_dir: Path, folder: Path, core: str) -> Path:
    """``folder`` holding ``tflm_probe.h`` and its precompiled ``tflm_probe.h.gch`` for ``core`` (made once)."""
    gch = folder / "tflm_probe.h.gch"
    header = folder / "tflm_probe.h"
    if not gch.is_file() or not header.is_file() or header.read_text() != _PROBE_HEADER:
        folder.mkdir(parents=True, exist_ok=True)
        header.write_text(_PROBE_HEADER)
        flags = _compile_flags(core, tflm_dir)
        _run(["arm-none-eabi-g++", *flags, "-x", "c++-header", str(folder / "tflm_probe.h"), "-o", str(gch) + ".tmp"])
        Path(str(gch) + ".tmp").rename(gch)
    return folder


def _compile_flags(core: str, tflm_dir: Path) -> list[str]:
    cpu = ["-mcpu=" + core, "-mthumb", *CORE_FLAGS[core].split()]
    inc = [f"-I{tflm_dir}", f"-I{tflm_dir}/third_party/flatbuffers/include", f"-I{tflm_dir}/third_party/gemmlowp"]
    return ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", OPT, *DEFINES.split(),
            "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables", *cpu, *inc]  # fmt: skip


def bundle_registration_keys(resolver_header: str) -> list[str]:
    """The registration keys (``OP`` / ``OP:VARIANT``) an exported bundle's ``model_op_resolver.h`` calls."""
    from search.tflite_graph import _RESOLVER_METHODS

    by_method = {m: op for op, m in _RESOLVER_METHODS.items()}
    keys = []
    for found in re.finditer(r"resolver\.(Add\w+)\(", resolver_header):
        method, rest = found.group(1), resolver_header[found.end() :]
        depth, arg = 1, ""
        for ch in rest:  # the argument up to the call's closing parenthesis
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                break
            arg += ch
        variant = re.search(r"Register_\w+?_(INT8_INT16|INT8|INT16|INT4)\(", arg)
        keys.append(f"{by_method[method]}:{variant.group(1)}" if variant else by_method[method])
    return keys


def link_bundle(lib: Path, tflm_dir: Path, bundle: Path, work: Path, core: str) -> LinkResult:
    """Compile an exported TFLM bundle's main.cc, model_data.cc and test_input.cc with the calibration
    flags and link them against ``lib`` into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in ("main.cc", "model_data.cc", "test_input.cc"):
        obj = work / (src + ".o")
        if not obj.is_file() or obj.stat().st_mtime < (bundle / src).stat().st_mtime:
            flags = _compile_flags(core, tflm_dir)
            _run(["arm-none-eabi-g++", *flags, f"-I{bundle}", "-c", str(bundle / src), "-o", str(obj)])
        objs.append(str(obj))
    return _link(work, core, objs, lib)


def _link(work: Path, core: str, objs: list[str], lib: Path) -> LinkResult:
    cpu = ["-mcpu=" + core, "-mthumb", *CORE_FLAGS[core].split()]
    link = ["arm-none-eabi-g++", *cpu, *LINK_FLAGS.split(), "-Wl,-Map=image.map", *objs, str(lib), "-lm"]
    elf = work / "image.elf"
    inputs = [work / o for o in objs] + [lib]
    if not elf.is_file() or any(p.stat().st_mtime > elf.stat().st_mtime for p in inputs):
        _run([*link, "-o", "image.elf.tmp"], cwd=work)
        (work / "image.elf.tmp").rename(elf)
    size_line = _run(["arm-none-eabi-size", "image.elf"], cwd=work).splitlines()[1].split()
    sections = _parse_map((work / "image.map").read_text())
    return LinkResult(int(size_line[0]), int(size_line[1]), int(size_line[2]), sections)


def model_array_bytes(length: int) -> int:
    """Flash of the model data in the probe: the array padded to 16 plus the 4-byte length."""
    return -(-length // 16) * 16 + 4


def calibrate_core(
    tflm_dir: Path, build_dir: Path, core: str, jobs: int = 2, members: set[str] | None = None
) -> dict[str, object]:
    """Build, link the interpreter and every variant, and return the core's calibration record."""
    lib = build_library(tflm_dir, build_dir, core, jobs, members)
    _probe_header(tflm_dir, build_dir / f"pch-{core}", core)  # once, before the parallel links
    links = build_dir / f"links-{core}"
    base = link_program(lib, tflm_dir, links / "base", core, [])
    base_sections = set(base.sections)
    model_bytes = model_array_bytes(16)
    names: list[str] = []
    sizes: list[int] = []
    index: dict[str, int] = {}
    ops: dict[str, dict[str, object]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # the links are child processes
        results = list(
            pool.map(lambda kc: link_program(lib, tflm_dir, links / kc[0].replace(":", "_"), core, [kc[1]]), VARIANTS)
        )
    for (key, call), res in zip(VARIANTS, results, strict=True):
        extra = sorted(k for k in res.sections if k not in base_sections)
        ids = []
        for k in extra:
            if k not in index:
                index[k] = len(names)
                names.append(k)
                sizes.append(res.sections[k])
            ids.append(index[k])
        ram = res.data + res.bss - base.data - base.bss  # the kernel's own static data (same resolver size)
        ops[key] = {"call": call, "delta_bytes": res.flash - base.flash, "static_ram_delta": ram, "sections": ids}
        log.info("%s %s: +%d B", core, key, res.flash - base.flash)
    checks: list[dict[str, object]] = []
    slots: list[float] = []
    static_ram = base.data + base.bss - ARENA_BYTES
    for op_set in CHECK_SETS:
        calls = [dict(VARIANTS)[k] for k in op_set]
        res = link_program(lib, tflm_dir, links / ("set_" + "_".join(k.replace(":", "_") for k in op_set)), core, calls)
        set_ram = res.data + res.bss - ARENA_BYTES
        union = {i for k in op_set for i in ops[k]["sections"]}  # type: ignore[attr-defined]
        checks.append(
            {
                "ops": list(op_set),
                "linked_bytes": res.flash - model_bytes,
                "union_estimate_bytes": base.flash - model_bytes + sum(sizes[i] for i in union),
                "sum_of_deltas_bytes": base.flash - model_bytes + sum(int(ops[k]["delta_bytes"]) for k in op_set),  # type: ignore[call-overload]
                "static_ram_bytes": set_ram,
            }
        )
        log.info(
            "%s %s: linked %d B, union %d B",
            core,
            "+".join(op_set),
            res.flash - model_bytes,
            checks[-1]["union_estimate_bytes"],
        )
        # The resolver holds one registration per op (the probe's base resolver has room for one).
        kernels = sum(int(ops[k]["static_ram_delta"]) for k in op_set)  # type: ignore[call-overload]
        slots.append((set_ram - static_ram - kernels) / (len(op_set) - 1))
    return {
        "interpreter_bytes": base.flash - model_bytes,
        "interpreter_split": base.split(),
        "static_ram_bytes": static_ram,
        "resolver_slot_bytes": round(sorted(slots)[len(slots) // 2], 1),
        "ops": ops,
        "section_sizes": sizes,
        "section_names": names,
        "check_links": checks,
    }


def calibrate(
    tflm_dir: Path, build_dir: Path, cores: list[str], out: Path, jobs: int = 2, members_from: str | None = None
) -> dict[str, object]:
    """Calibrate ``cores`` and write (merge into) the JSON file ``out``; with ``members_from`` (a core
    calibrated before under ``build_dir``) build only the library members that core's links used."""
    members = linked_members(build_dir, members_from) if members_from else None
    if members is not None and not members:
        raise CalibrationError(f"no links of {members_from} under {build_dir} to take the library members from")
    data: dict[str, object] = json.loads(out.read_text()) if out.is_file() else {}
    per_core = dict(data.get("cores", {}))  # type: ignore[call-overload]
    for core in cores:
        per_core[core] = calibrate_core(tflm_dir, build_dir, core, jobs, members)
    data = {
        "about": "Flash (bytes of .text + .rodata + .data) of TFLite Micro + CMSIS-NN links; search/flash_calibrate.py",
        "tflm_commit": TFLM_COMMIT,
        "tflm_tree": "create_tflm_tree.py with TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn",
        "compiler": compiler_version(),
        "compile_flags": f"{OPT} -ffunction-sections -fdata-sections -fno-unwind-tables {DEFINES}",
        "link_flags": LINK_FLAGS,
        "core_flags": {c: CORE_FLAGS[c] for c in per_core},
        "date": datetime.date.today().isoformat(),
        "program": "main(): GetModel, MicroMutableOpResolver, MicroInterpreter, AllocateTensors, Invoke, MicroPrintf",
        "cores": per_core,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    """The command line: a bad argument or a failed calibration is one line on stderr and exit status 1."""
    parser = OneLineParser(prog="python -m search.flash_calibrate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tflm-dir", type=Path, required=True, help="a TFLM tree made with OPTIMIZED_KERNEL_DIR=cmsis_nn"
    )
    parser.add_argument("--build-dir", type=Path, required=True, help="where libraries and probe links are built")
    parser.add_argument("--cores", nargs="+", default=["cortex-m4"], choices=sorted(CORE_FLAGS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "calibration" / "tflm_code_size.json")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--members-from", choices=sorted(CORE_FLAGS), help="build only what this core's links used")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        calibrate(args.tflm_dir, args.build_dir, args.cores, args.out, args.jobs, args.members_from)
    except TinyfrontError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
