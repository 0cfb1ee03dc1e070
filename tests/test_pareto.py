"""Pareto mask, hypervolume and knee point on hand-made points with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from search.errors import ConfigError
from search.pareto import hypervolume, knee_point, pareto_mask

MAX_MIN = ["maximize", "minimize"]


def test_pareto_mask_mixed_directions() -> None:
    # (accuracy up, latency down): (0.9, 10) and (0.8, 5) trade off; (0.7, 8) is dominated by (0.8, 5);
    # (0.9, 12) is dominated by (0.9, 10) (equal accuracy, slower).
    pts = [[0.9, 10.0], [0.8, 5.0], [0.7, 8.0], [0.9, 12.0], [0.6, 1.0]]
    assert pareto_mask(pts, MAX_MIN).tolist() == [True, True, False, False, True]


def test_pareto_mask_keeps_duplicates_and_handles_empty() -> None:
    assert pareto_mask([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]], ["minimize", "minimize"]).tolist() == [True, True, False]
    assert pareto_mask(np.zeros((0, 3)), ["minimize"] * 3).tolist() == []


def test_pareto_mask_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="direction must be"):
        pareto_mask([[1.0]], ["lower"])
    with pytest.raises(ConfigError, match="expected 2 directions"):
        pareto_mask([[1.0, 2.0]], ["minimize"])
    with pytest.raises(ConfigError, match="1 NaN/inf"):
        pareto_mask([[1.0, np.nan]], MAX_MIN)


def test_hypervolume_2d_known_area() -> None:
    # Minimise both, reference (4, 4): the staircase (1,3), (2,2), (3,1) covers 3*1 + 2*1 + 1*1 = 6.
    pts = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]
    assert hypervolume(pts, ["minimize", "minimize"], [4.0, 4.0]) == pytest.approx(6.0)
    # A dominated point and a point outside the reference change nothing.
    more = pts + [[3.0, 3.0], [5.0, 0.5]]
    assert hypervolume(more, ["minimize", "minimize"], [4.0, 4.0]) == pytest.approx(6.0)


def test_hypervolume_maximize_uses_lower_bound_reference() -> None:
    # accuracy 0.8 at latency 5, reference (accuracy 0, latency 10): box 0.8 x 5 = 4.
    assert hypervolume([[0.8, 5.0]], MAX_MIN, [0.0, 10.0]) == pytest.approx(4.0)
    assert hypervolume([[0.8, 5.0], [0.4, 1.0]], MAX_MIN, [0.0, 10.0]) == pytest.approx(4.0 + 0.4 * 4.0)


def test_hypervolume_3d_known_volume() -> None:
    # Two boxes against reference (2,2,2): (0,0,1) -> 2*2*1 = 4; (1,1,0) -> 1*1*2 = 2; overlap 1*1*1 = 1.
    pts = [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    assert hypervolume(pts, ["minimize"] * 3, [2.0, 2.0, 2.0]) == pytest.approx(5.0)


def test_hypervolume_4d_single_box_and_union() -> None:
    ref = [1.0, 1.0, 1.0, 1.0]
    assert hypervolume([[0.5, 0.5, 0.5, 0.5]], ["minimize"] * 4, ref) == pytest.approx(0.0625)
    # Two boxes 0.5^3 x 1 (one free axis each), intersection 0.5^4.
    pts = [[0.0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.0]]
    assert hypervolume(pts, ["minimize"] * 4, ref) == pytest.approx(0.125 + 0.125 - 0.0625)


def test_hypervolume_matches_optuna_on_random_points() -> None:
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        pts = rng.uniform(0, 1, size=(25, m))
        ref = np.full(m, 1.1)
        assert hypervolume(pts, ["minimize"] * m, ref) == pytest.approx(compute_hypervolume(pts, ref), rel=1e-9)


def test_hypervolume_empty_and_nothing_inside() -> None:
    assert hypervolume(np.zeros((0, 2)), MAX_MIN, [0.0, 1.0]) == 0.0
    assert hypervolume([[0.5, 2.0]], MAX_MIN, [0.0, 1.0]) == 0.0


def test_knee_2d_is_farthest_from_the_line_between_ends() -> None:
    # Minimise both. Ends (0,10) and (10,0); (2,2) bulges most towards the origin.
    pts = [[0.0, 10.0], [10.0, 0.0], [2.0, 2.0], [5.0, 4.0], [1.0, 6.0]]
    assert knee_point(pts, ["minimize", "minimize"]) == 2


def test_knee_ignores_dominated_points_and_mixed_directions() -> None:
    # accuracy up, latency down; (0.5, 1.5) is dominated by (0.9, 1.0) -> never the knee.
    pts = [[0.5, 1.5], [0.95, 20.0], [0.2, 0.5], [0.9, 1.0]]
    assert knee_point(pts, MAX_MIN) == 3


def test_knee_3d_plane_through_extremes() -> None:
    # The extremes span the plane x+y+z=2; (0.2,0.2,0.2) lies 1.4/sqrt(3) inside it, (0.3,0.3,0.35) less.
    pts = [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.2, 0.2, 0.2], [0.3, 0.3, 0.35]]
    assert knee_point(pts, ["minimize"] * 3) == 3


def test_knee_degenerate_cases() -> None:
    assert knee_point(np.zeros((0, 2)), MAX_MIN) is None
    assert knee_point([[0.7, 3.0]], MAX_MIN) == 0
    # Two points only: both on the line; tie broken by the lower scaled sum, then the lower index.
    assert knee_point([[0.0, 1.0], [1.0, 0.0]], ["minimize", "minimize"]) == 0
