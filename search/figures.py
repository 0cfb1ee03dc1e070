"""A measured or estimated figure, labelled for what it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["measured", "estimated"]


@dataclass(frozen=True)
class Figure:
    """One number with its unit and its provenance.

    ``kind`` is ``"measured"`` when a real runtime ran here, ``"estimated"`` when a model of
    a board we cannot run produced it. ``error_pct`` is the estimator's known median absolute
    error (in percent) where one is known; ``method`` says in a few words how it was obtained.
    """

    value: float
    unit: str
    kind: Kind
    method: str
    error_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        return cls(**data)

    def label(self) -> str:
        """A short human label such as ``12.3 ms (estimated, ±15%)``."""
        value = f"{self.value:,.3g}" if abs(self.value) < 1000 else f"{self.value:,.0f}"
        extra = f", ±{self.error_pct:.0f}%" if self.error_pct is not None else ""
        return f"{value} {self.unit} ({self.kind}{extra})"
