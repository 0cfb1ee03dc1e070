"""What a candidate is (:class:`CandidateSpec`) and what measuring it gave (:class:`CandidateResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from search.figures import Figure
from search.targets import Target

PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "int8_qat", "int16x8")

#: Objectives a study can optimise and their direction.
OBJECTIVES: dict[str, str] = {
    "accuracy": "maximize",
    "latency_ms": "minimize",
    "flash_kb": "minimize",
    "sram_kb": "minimize",
}

#: Budgets checked for every candidate, with the figure each one limits.
BUDGETS: dict[str, str] = {"flash": "flash_kb", "sram": "sram_kb", "latency": "latency_ms"}


@dataclass(frozen=True)
class CandidateSpec:
    """One point of the design space plus the training settings that produce it."""

    family: str = "mobilenet_v1"
    width: float = 0.5
    sparsity: float = 0.0
    precision: str = "int8"
    depth: int | None = None
    resolution: int | None = None
    epochs: int = 5
    finetune_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateSpec:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def budget_of(target: Target, budget: str) -> float:
    """The model's budget on ``target`` for ``budget`` in {flash, sram, latency} (KB or ms)."""
    return {
        "flash": target.flash_budget_kb,
        "sram": target.sram_budget_kb,
        "latency": target.latency_budget_ms,
    }[budget]


@dataclass
class CandidateResult:
    """Everything measured (or estimated) for one candidate on one target. JSON-serialisable."""

    spec: CandidateSpec
    target: Target
    dataset: dict[str, Any]
    figures: dict[str, Figure]
    macs: int
    params: int
    ops: list[str]
    sparsity: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    reused_base: bool = False
    artifacts_dir: str = ""
    tinyfront_version: str = ""
    #: Keras validation accuracy after fine-tune epochs (search.early_stop); empty when not measured.
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    #: the pruned weights came from an earlier candidate of the same width and sparsity in this process
    reused_pruning: bool = False

    @property
    def verdicts(self) -> dict[str, bool]:
        """``{"flash": fits, "sram": fits, "latency": fits}`` against the target's budgets."""
        return {b: self.figures[key].value <= budget_of(self.target, b) for b, key in BUDGETS.items()}

    @property
    def feasible(self) -> bool:
        return all(self.verdicts.values())

    def objective_value(self, name: str) -> float:
        if name not in OBJECTIVES:
            raise KeyError(f"unknown objective '{name}'; known: {', '.join(OBJECTIVES)}")
        return self.figures[name].value

    def constraint_values(self) -> list[float]:
        """Figure minus budget for flash, SRAM and latency: <= 0 is feasible (Optuna's convention)."""
        return [self.figures[key].value - budget_of(self.target, b) for b, key in BUDGETS.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "target": self.target.to_dict(),
            "dataset": self.dataset,
            "figures": {k: f.to_dict() for k, f in self.figures.items()},
            "verdicts": self.verdicts,
            "feasible": self.feasible,
            "macs": self.macs,
            "params": self.params,
            "ops": list(self.ops),
            "sparsity": self.sparsity,
            "layers": self.layers,
            "stage_seconds": self.stage_seconds,
            "reused_base": self.reused_base,
            "reused_pruning": self.reused_pruning,
            "artifacts_dir": self.artifacts_dir,
            "tinyfront_version": self.tinyfront_version,
            **({"checkpoints": self.checkpoints} if self.checkpoints else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateResult:
        return cls(
            spec=CandidateSpec.from_dict(data["spec"]),
            target=Target.from_dict(data["target"]),
            dataset=data["dataset"],
            figures={k: Figure.from_dict(v) for k, v in data["figures"].items()},
            macs=int(data["macs"]),
            params=int(data["params"]),
            ops=list(data["ops"]),
            sparsity=data["sparsity"],
            layers=list(data.get("layers", [])),
            stage_seconds=dict(data.get("stage_seconds", {})),
            reused_base=bool(data.get("reused_base", False)),
            reused_pruning=bool(data.get("reused_pruning", False)),
            artifacts_dir=str(data.get("artifacts_dir", "")),
            tinyfront_version=str(data.get("tinyfront_version", "")),
            checkpoints=list(data.get("checkpoints", [])),
        )
