"""Compiler flags and build defaults of a target's core for the TFLite Micro bundle's build files."""

from __future__ import annotations

from dataclasses import dataclass

from search.targets import Target

#: GCC floating-point flags per Cortex-M core (the FPU each core has in the boards tinyfront ships).
_FLOAT_FLAGS = {
    "cortex-m0": "-mfloat-abi=soft",
    "cortex-m0plus": "-mfloat-abi=soft",
    "cortex-m3": "-mfloat-abi=soft",
    "cortex-m23": "-mfloat-abi=soft",
    "cortex-m4": "-mfpu=fpv4-sp-d16 -mfloat-abi=hard",
    "cortex-m7": "-mfpu=fpv5-d16 -mfloat-abi=hard",
    "cortex-m33": "-mfpu=fpv5-sp-d16 -mfloat-abi=hard",
    "cortex-m35p": "-mfpu=fpv5-sp-d16 -mfloat-abi=hard",
    "cortex-m52": "-mfpu=auto -mfloat-abi=hard",
    "cortex-m55": "-mfpu=auto -mfloat-abi=hard",
    "cortex-m85": "-mfpu=auto -mfloat-abi=hard",
}

#: ``TARGET_ARCH`` for TFLM's cortex_m_generic target when generating the tree.
_TFLM_ARCH = {"cortex-m4": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp"}

#: Core assumed for a user-brought model exported without a target.
DEFAULT_CORE = "cortex-m4"


@dataclass(frozen=True)
class BuildFlags:
    target_name: str
    target_line: str
    core: str
    default_platform: str  # "cortex-m" or "host"
    cpu: str
    float_flags: str
    tflm_target_arch: str
    note: str

    @property
    def core_label(self) -> str:
        return self.core

    @property
    def cpu_line(self) -> str:
        return f"-mcpu={self.cpu} {self.float_flags}"


def build_flags(target: Target | None) -> BuildFlags:
    """Build defaults for ``target`` (None: a user-brought model, assumed Cortex-M4 and said so)."""
    if target is None:
        core = DEFAULT_CORE
        name, line = "an unspecified board", f"none given: the build files assume {core}; set CPU / FLOAT_FLAGS"
        note = (
            f"\nNo target was given when this bundle was exported: the build defaults to `{core}` with "
            f"`{_FLOAT_FLAGS[core]}`. Set `CPU=` and `FLOAT_FLAGS=` (CMake: `TINYFRONT_CPU`, "
            "`TINYFRONT_FLOAT_FLAGS`) for your core.\n"
        )
    else:
        core = target.core
        name = target.name
        line = (
            f"{target.name}: {target.description}; {core} at {target.clock_mhz:g} MHz, {target.flash_kb:g} KB flash, "
            f"{target.sram_kb:g} KB SRAM (model budgets {target.flash_budget_kb:g} KB flash, "
            f"{target.sram_budget_kb:g} KB SRAM, {target.latency_budget_ms:g} ms)"
        )
        note = ""
    if core in _FLOAT_FLAGS:
        if core in ("cortex-m85", "cortex-m52"):
            note += (
                f"\n`-mcpu={core}` needs arm-none-eabi-gcc 13 or newer; with an older compiler build with "
                "`CPU=cortex-m55` (same Helium/MVE extension).\n"
            )
        return BuildFlags(name, line, core, "cortex-m", core, _FLOAT_FLAGS[core], _TFLM_ARCH.get(core, core), note)
    note += (
        f"\nThis target's core ({core}) is not an Arm Cortex-M, so CMSIS-NN does not apply and the Makefile "
        "defaults to `PLATFORM=host` (the same check on a PC). On the board, build the same sources with the "
        "vendor's TFLite Micro port (for ESP32 chips: ESP-IDF's `esp-tflite-micro` component, whose ESP-NN "
        "kernels replace CMSIS-NN).\n"
    )
    return BuildFlags(name, line, core, "host", DEFAULT_CORE, _FLOAT_FLAGS[DEFAULT_CORE], DEFAULT_CORE, note)
