"""Search-space validation, serialisation and suggestion."""

from __future__ import annotations

import optuna
import pytest

from search.errors import ConfigError
from search.space import SearchSpace, suggest
from search.targets import get_target


def test_defaults_resolve_to_the_runtime_precisions() -> None:
    tflm = SearchSpace().resolved(get_target("nucleo-f446re"))
    assert tflm.precisions is not None and "float16" not in tflm.precisions and "int8" in tflm.precisions
    assert tflm.grid_size() == 4 * 9 * len(tflm.precisions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width_min": 0.0}, r"width_min must be in \(0, 2\], got 0"),
        ({"width_max": 3.0}, r"width_max must be in \(0, 2\], got 3"),
        ({"width_min": 0.75, "width_max": 0.5}, r"width_min \(0.75\) must be <= width_max \(0.5\)"),
        ({"sparsity_max": 0.99}, r"sparsity_max must be in \[0, 0.95\], got 0.99"),
        ({"sparsity_min": -0.1}, r"sparsity_min must be in \[0, 0.95\], got -0.1"),
        ({"width_step": -0.25}, r"width_step must be > 0 .* got -0.25"),
        ({"width_max": 0.9}, r"width_max - width_min \(0.65\) must be a whole number of width_step \(0.25\) steps"),
        ({"precisions": ("int4",)}, r"unknown precision 'int4'; expected one of: float32"),
        ({"precisions": ()}, "at least one precision"),
        ({"precisions": ("int8", "int8")}, "must not repeat"),
        ({"resolutions": (2,)}, r"from 4 to 1024 pixels, got 2"),
    ],
)
def test_invalid_spaces_name_the_bound_and_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace(**kwargs)


def test_unsupported_precision_is_refused_for_the_target() -> None:
    with pytest.raises(
        ConfigError, match="precision 'float16' cannot run on target 'nucleo-f446re' \\(runtime tflm\\)"
    ):
        SearchSpace(precisions=("int8", "float16")).resolved(get_target("nucleo-f446re"))


def test_round_trip_and_unknown_key() -> None:
    space = SearchSpace(width_step=None, precisions=("int8", "float32"), resolutions=(8, 16))
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(ConfigError, match="unknown search-space key 'depth'"):
        SearchSpace.from_dict({**space.to_dict(), "depth": 3})


def test_suggest_stays_on_the_grid_and_is_seeded() -> None:
    space = SearchSpace(precisions=("int8", "float32", "int16x8"), resolutions=(8, 12))

    def sample(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out = []
        for _ in range(30):
            trial = study.ask()
            out.append(suggest(trial, space))
            study.tell(trial, 0.0)
        return out

    a, b = sample(3), sample(3)
    assert a == b
    widths = {p["width"] for p in a}
    sparsities = {p["sparsity"] for p in a}
    assert widths <= {0.25, 0.5, 0.75, 1.0} and len(widths) >= 3
    assert sparsities <= {round(0.1 * i, 6) for i in range(9)}
    assert {p["precision"] for p in a} == {"int8", "float32", "int16x8"}
    assert {p["resolution"] for p in a} == {8, 12}


def test_fixed_ranges_are_not_suggested() -> None:
    space = SearchSpace(width_min=0.5, width_max=0.5, sparsity_max=0.0, precisions=("int8",))
    study = optuna.create_study()
    trial = study.ask()
    assert suggest(trial, space) == {"width": 0.5, "sparsity": 0.0, "precision": "int8"}
    assert trial.params == {}
    with pytest.raises(ConfigError, match="must be resolved"):
        suggest(trial, SearchSpace())
