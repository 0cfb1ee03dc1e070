"""Load and validate ``targets.toml`` into frozen :class:`Target` records.

Every error names the file, the target and the key, e.g.
``flash_kb must be > 0, got -3 (targets.toml, target 'nucleo-f446re')``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from search import names
from search.errors import ConfigError

Runtime = Literal["tflm", "onnxruntime", "litert"]
RUNTIMES: tuple[str, ...] = ("tflm", "onnxruntime", "litert")

_HERE = Path(__file__).resolve().parent
#: The board file users read and edit: ``targets.toml`` at the repository root.
REPO_TARGETS_FILE = _HERE.parent / "targets.toml"
#: The copy shipped inside the package (a wheel or ``pip install .`` has no repository root);
#: tests/test_packaging.py keeps it identical to :data:`REPO_TARGETS_FILE`.
PACKAGED_TARGETS_FILE = _HERE / "targets.toml"
#: The default targets file: the repository's in a checkout (editable install), else the packaged copy.
DEFAULT_TARGETS_FILE = (
    REPO_TARGETS_FILE
    if (_HERE.parent / "pyproject.toml").is_file() and REPO_TARGETS_FILE.is_file()
    else PACKAGED_TARGETS_FILE
)

_TOP_KEYS = {
    "description", "core", "clock_mhz", "flash_kb", "sram_kb", "runtime", "host_scale", "budget",
    "latency_calibration",
}  # fmt: skip
_BUDGET_KEYS = {"app_flash_kb", "app_sram_kb", "latency_ms"}


@dataclass(frozen=True)
class Target:
    """A board, its runtime and the budgets a model must meet on it."""

    name: str
    description: str
    core: str
    clock_mhz: float
    flash_kb: float
    sram_kb: float
    runtime: Runtime
    app_flash_kb: float
    app_sram_kb: float
    latency_budget_ms: float
    host_scale: float | None = None
    source: str = ""
    #: A CPI calibration file (``tinyfront calibrate``'s output, absolute path) that the device-runner
    #: latency estimate uses instead of the shipped ``search/calibration/cpi_fit.json``; None: the shipped one.
    latency_calibration: str | None = None
    #: SHA-256 of that file's bytes when it was loaded: what identifies the calibration (a study
    #: resumed from a moved or cloned project finds the same file at another path).
    latency_calibration_sha256: str | None = None

    @property
    def is_mcu(self) -> bool:
        """True for TFLite Micro targets (bare-metal microcontrollers)."""
        return self.runtime == "tflm"

    @property
    def flash_budget_kb(self) -> float:
        """Flash left for the model (weights and runtime code)."""
        return self.flash_kb - self.app_flash_kb

    @property
    def sram_budget_kb(self) -> float:
        """SRAM (or RAM) left for the model (arena and runtime state)."""
        return self.sram_kb - self.app_sram_kb

    def with_budgets(
        self,
        flash_budget_kb: float | None = None,
        sram_budget_kb: float | None = None,
        latency_budget_ms: float | None = None,
    ) -> Target:
        """A copy whose model budgets are overridden (CLI, magic or web form win over the file)."""
        from dataclasses import replace

        changes: dict[str, Any] = {}
        if flash_budget_kb is not None:
            _check_positive(flash_budget_kb, "flash budget (KB)", self)
            changes["app_flash_kb"] = self.flash_kb - flash_budget_kb
        if sram_budget_kb is not None:
            _check_positive(sram_budget_kb, "SRAM budget (KB)", self)
            changes["app_sram_kb"] = self.sram_kb - sram_budget_kb
        if latency_budget_ms is not None:
            _check_positive(latency_budget_ms, "latency budget (ms)", self)
            changes["latency_budget_ms"] = latency_budget_ms
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values; ``latency_calibration`` and its digest only when set, so that the
        records of studies made before the keys existed compare equal to a target without them (resume)."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "core": self.core,
            "clock_mhz": self.clock_mhz,
            "flash_kb": self.flash_kb,
            "sram_kb": self.sram_kb,
            "runtime": self.runtime,
            "app_flash_kb": self.app_flash_kb,
            "app_sram_kb": self.app_sram_kb,
            "latency_budget_ms": self.latency_budget_ms,
            "host_scale": self.host_scale,
            "source": self.source,
        }
        if self.latency_calibration is not None:
            data["latency_calibration"] = self.latency_calibration
        if self.latency_calibration_sha256 is not None:
            data["latency_calibration_sha256"] = self.latency_calibration_sha256
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(**data)


def _check_positive(value: float, what: str, target: Target) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r} (target '{target.name}')")


def load_targets(path: str | Path | None = None) -> dict[str, Target]:
    """Read a targets file (default: the shipped ``targets.toml``) and validate every value."""
    file = Path(path) if path is not None else DEFAULT_TARGETS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"targets file not found: {file}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"targets file {file} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read targets file {file}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"TOML syntax error in {file.name}: {exc}") from None
    table = data.get("targets")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{file.name} has no [targets.<name>] tables")
    return {name: _parse_target(file.name, name, raw, file.parent) for name, raw in table.items()}


def get_target(name: str, path: str | Path | None = None) -> Target:
    """One target by name, with the known names listed when it is missing."""
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets))
        raise ConfigError(f"unknown target '{name}'; known targets: {known}")
    return targets[name]


class _Reader:
    def __init__(self, file: str, name: str, raw: dict[str, Any]) -> None:
        self.file, self.name, self.raw = file, name, raw

    def where(self, key: str) -> str:
        return f"({self.file}, target '{self.name}', key '{key}')"

    def number(self, table: dict[str, Any], key: str, *, minimum: float, strict: bool, prefix: str = "") -> float:
        full = prefix + key
        if key not in table:
            raise ConfigError(f"missing required key {self.where(full)}")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{full} must be a number, got {type(value).__name__} {value!r} {self.where(full)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float (TOML integers are unbounded here)
            finite = False
        if not finite:
            shown = f"{value!r}" if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
            raise ConfigError(f"{full} must be a finite number, got {shown} {self.where(full)}")
        if (strict and value <= minimum) or (not strict and value < minimum):
            op = ">" if strict else ">="
            raise ConfigError(f"{full} must be {op} {minimum:g}, got {value:g} {self.where(full)}")
        return float(value)

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.raw:
            if default is not None:
                return default
            raise ConfigError(f"missing required key {self.where(key)}")
        value = self.raw[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} must be a non-empty string, got {value!r} {self.where(key)}")
        return value.strip()


def _parse_target(file: str, name: str, raw: Any, folder: Path | None = None) -> Target:
    if not isinstance(raw, dict):
        raise ConfigError(f"target '{name}' must be a table, got {type(raw).__name__} ({file})")
    r = _Reader(file, name, raw)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' {r.where(unknown[0])}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    runtime = r.text("runtime")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime '{runtime}' {r.where('runtime')}; expected one of: {', '.join(RUNTIMES)}")
    budget = raw.get("budget")
    if not isinstance(budget, dict):
        raise ConfigError(f"missing [budget] table {r.where('budget')}")
    unknown = sorted(set(budget) - _BUDGET_KEYS)
    if unknown:
        raise ConfigError(f"unknown key 'budget.{unknown[0]}' {r.where('budget.' + unknown[0])}")
    flash_kb = r.number(raw, "flash_kb", minimum=0, strict=True)
    sram_kb = r.number(raw, "sram_kb", minimum=0, strict=True)
    app_flash = r.number(budget, "app_flash_kb", minimum=0, strict=False, prefix="budget.")
    app_sram = r.number(budget, "app_sram_kb", minimum=0, strict=False, prefix="budget.")
    if app_flash >= flash_kb:
        raise ConfigError(
            f"budget.app_flash_kb ({app_flash:g}) must be < flash_kb ({flash_kb:g}) {r.where('budget.app_flash_kb')}"
        )
    if app_sram >= sram_kb:
        raise ConfigError(
            f"budget.app_sram_kb ({app_sram:g}) must be < sram_kb ({sram_kb:g}) {r.where('budget.app_sram_kb')}"
        )
    host_scale = r.number(raw, "host_scale", minimum=0, strict=True) if "host_scale" in raw else None
    core = r.text("core").lower()
    calibration = digest = None
    if "latency_calibration" in raw:
        calibration = _calibration(r, core, folder if folder is not None else Path.cwd())
        digest = file_sha256(Path(calibration))
    return Target(
        name=name,
        description=r.text("description", default=name),
        core=core,
        clock_mhz=r.number(raw, "clock_mhz", minimum=0, strict=True),
        flash_kb=flash_kb,
        sram_kb=sram_kb,
        runtime=runtime,  # type: ignore[arg-type]
        app_flash_kb=app_flash,
        app_sram_kb=app_sram,
        latency_budget_ms=r.number(budget, "latency_ms", minimum=0, strict=True, prefix="budget."),
        host_scale=host_scale,
        source=file,
        latency_calibration=calibration,
        latency_calibration_sha256=digest,
    )


def _calibration(r: _Reader, core: str, folder: Path) -> str:
    """The ``latency_calibration`` file, resolved against the targets file's folder and checked.

    It must exist, load as a CPI fit (:func:`search.cpi_model.load_fit`) and have a CPI for the
    class of the target's core; returns the absolute path.
    """
    from search.cpi_model import CPI_CLASS, load_fit
    from search.errors import MeasurementError

    key = "latency_calibration"
    text = r.text(key)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = folder / path
    path = path.resolve()
    cls = CPI_CLASS.get(core)
    if cls is None:
        raise ConfigError(
            f"{key} needs a core with a device runner and a CPI model, not '{core}' "
            f"(known: {', '.join(sorted(CPI_CLASS))}) {r.where(key)}"
        )
    if not path.is_file():
        raise ConfigError(f"{key} file not found: {path} {r.where(key)}")
    try:
        fit, _ = load_fit(path)
    except MeasurementError as exc:
        raise ConfigError(f"{exc} {r.where(key)}") from None
    if cls not in fit.cpi:
        raise ConfigError(
            f"{key} {path.name} has a CPI for {', '.join(sorted(fit.cpi))}, not for {cls} (the class of core "
            f"'{core}'); calibrate this target with `tinyfront calibrate` {r.where(key)}"
        )
    return str(path)


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes, in hex (:func:`search.names.file_sha256`); ConfigError when it
    cannot be read."""
    try:
        return names.file_sha256(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
