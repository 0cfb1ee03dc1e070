"""The search space: width multiplier, weight sparsity, precision and (optionally) input resolution.

Width and sparsity are discrete by default (width 0.25-1.0 in steps of 0.25, sparsity 0-0.8 in
steps of 0.1). Discrete steps are a deliberate choice: every trial at the same width reuses the
same trained base model (only pruning, conversion and measurement run again), an exhaustive grid
exists to benchmark samplers against, and a width of 0.53 is not meaningfully different from 0.5
once filters are rounded to multiples of 8. Pass ``width_step=None`` / ``sparsity_step=None`` for
continuous ranges.

Precisions default to every precision the target's runtime can run
(``search.candidate.supported_precisions``); an explicit list is checked against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from search.candidate import supported_precisions
from search.errors import ConfigError
from search.result import PRECISIONS

if TYPE_CHECKING:
    import optuna

    from search.targets import Target

#: Widest width multiplier the model families accept.
MAX_WIDTH = 2.0
#: Highest sparsity tinyfront searches (a fully pruned model is not a model).
MAX_SPARSITY = 0.95


@dataclass(frozen=True)
class SearchSpace:
    """Ranges for one study. ``precisions=None`` means "all the target's runtime supports"."""

    width_min: float = 0.25
    width_max: float = 1.0
    width_step: float | None = 0.25
    sparsity_min: float = 0.0
    sparsity_max: float = 0.8
    sparsity_step: float | None = 0.1
    precisions: tuple[str, ...] | None = None
    resolutions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_range("width", self.width_min, self.width_max, self.width_step, low=0.0, high=MAX_WIDTH, open_low=True)
        _check_range("sparsity", self.sparsity_min, self.sparsity_max, self.sparsity_step, low=0.0, high=MAX_SPARSITY)
        if self.precisions is not None:
            if len(self.precisions) == 0:
                raise ConfigError("precisions must list at least one precision, got an empty list")
            for p in self.precisions:
                if p not in PRECISIONS:
                    raise ConfigError(f"unknown precision '{p}'; expected one of: {', '.join(PRECISIONS)}")
            if len(set(self.precisions)) != len(self.precisions):
                raise ConfigError(f"precisions must not repeat, got {', '.join(self.precisions)}")
        if self.resolutions is not None:
            if len(self.resolutions) == 0:
                raise ConfigError("resolutions must list at least one input side, got an empty list")
            for r in self.resolutions:
                if isinstance(r, bool) or not isinstance(r, int) or r < 4 or r > 1024:
                    raise ConfigError(f"each resolution must be an integer from 4 to 1024 pixels, got {r!r}")

    def resolved(self, target: Target) -> SearchSpace:
        """This space with ``precisions`` filled in and checked against what ``target`` can run."""
        supported = tuple(supported_precisions(target))
        if self.precisions is None:
            return replace(self, precisions=supported)
        bad = [p for p in self.precisions if p not in supported]
        if bad:
            raise ConfigError(
                f"precision '{bad[0]}' cannot run on target '{target.name}' (runtime {target.runtime}); "
                f"supported: {', '.join(supported)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "width_min": self.width_min,
            "width_max": self.width_max,
            "width_step": self.width_step,
            "sparsity_min": self.sparsity_min,
            "sparsity_max": self.sparsity_max,
            "sparsity_step": self.sparsity_step,
            "precisions": list(self.precisions) if self.precisions is not None else None,
            "resolutions": list(self.resolutions) if self.resolutions is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"unknown search-space key '{unknown[0]}'; allowed: {', '.join(cls.__dataclass_fields__)}"
            )
        values = dict(data)
        for key in ("precisions", "resolutions"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def grid_size(self) -> int | None:
        """Number of distinct candidates, or None when a range is continuous or precisions are unresolved."""
        if self.width_step is None or self.sparsity_step is None or self.precisions is None:
            return None
        widths = round((self.width_max - self.width_min) / self.width_step) + 1
        sparsities = round((self.sparsity_max - self.sparsity_min) / self.sparsity_step) + 1
        return widths * sparsities * len(self.precisions) * len(self.resolutions or (None,))


def _check_range(
    name: str, lo: float, hi: float, step: float | None, *, low: float, high: float, open_low: bool = False
) -> None:
    for key, value in ((f"{name}_min", lo), (f"{name}_max", hi)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        too_low = value <= low if open_low else value < low
        if too_low or value > high:
            bracket = "(" if open_low else "["
            raise ConfigError(f"{key} must be in {bracket}{low:g}, {high:g}], got {value:g}")
    if lo > hi:
        raise ConfigError(f"{name}_min ({lo:g}) must be <= {name}_max ({hi:g})")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
            raise ConfigError(f"{name}_step must be a finite number (or None for a continuous range), got {step!r}")
        if step <= 0:
            raise ConfigError(f"{name}_step must be > 0 (or None for a continuous range), got {step:g}")
        n = (hi - lo) / step
        if abs(n - round(n)) > 1e-6:
            raise ConfigError(
                f"{name}_max - {name}_min ({hi - lo:g}) must be a whole number of {name}_step ({step:g}) steps"
            )


def suggest(trial: optuna.trial.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask ``trial`` for one point of ``space``; returns CandidateSpec fields (width, sparsity, precision, ...).

    ``space`` must be resolved (precisions filled in). A range whose min equals its max is not
    suggested (no Optuna parameter); its value is used as is.
    """
    if space.precisions is None:
        raise ConfigError("the search space must be resolved against a target before suggesting (precisions=None)")
    fields: dict[str, Any] = {
        "width": _suggest_number(trial, "width", space.width_min, space.width_max, space.width_step),
        "sparsity": _suggest_number(trial, "sparsity", space.sparsity_min, space.sparsity_max, space.sparsity_step),
        "precision": (
            trial.suggest_categorical("precision", list(space.precisions))
            if len(space.precisions) > 1
            else space.precisions[0]
        ),
    }
    if space.resolutions is not None:
        fields["resolution"] = (
            int(trial.suggest_categorical("resolution", list(space.resolutions)))
            if len(space.resolutions) > 1
            else space.resolutions[0]
        )
    return fields


def _suggest_number(trial: optuna.trial.Trial, name: str, lo: float, hi: float, step: float | None) -> float:
    if lo == hi:
        return float(lo)
    value = trial.suggest_float(name, lo, hi, step=step)
    # Steps like 0.1 give 0.30000000000000004; candidates (and the base-model cache) see clean values.
    return round(float(value), 6)
