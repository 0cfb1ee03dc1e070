"""Pareto mask, hypervolume and knee point on hand-made points with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from search.errors import ConfigError
from search.front import FrontReport, TrialRow, judge_front
from search.pareto import hypervolume, knee_point, pareto_mask
from search.result import OBJECTIVES
from search.targets import get_target

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


# ------------------------------------------------------------------------------- knee in budget units

MAX_MIN_MIN = ["maximize", "minimize", "minimize"]


def test_knee_in_budget_units_picks_the_issue_example() -> None:
    # Issue 11: trial 4 (84.2 %, 0.83 ms, 59.3 kB) vs trial 6 (93.6 %, 0.857 ms, 62.1 kB). Scaled by the
    # front's range, 0.027 ms weighed as much as 9.4 accuracy points and trial 4 won; in budget units
    # (latency 500 ms, flash 1792 kB) trial 6 is 0.005 % + 0.16 % of the budgets away from the ideal,
    # trial 4 is 9.4 accuracy points away.
    pts = [[0.842, 0.83, 59.3], [0.936, 0.857, 62.1]]
    assert knee_point(pts, MAX_MIN_MIN) == 0  # the old range scaling: ties, the lower scaled sum wins
    assert knee_point(pts, MAX_MIN_MIN, scale=[1.0, 500.0, 1792.0]) == 1


def test_knee_in_budget_units_trades_when_a_cost_matters() -> None:
    # Latency budget 10 ms: the most accurate point costs 9 ms (90 % of the budget), a point 1 point less
    # accurate runs in 2 ms, the cheapest loses 30 points. Distances to the ideal (0.95, 1 ms, 20 kB) in
    # budget units: a) 0.8, b) ~0.10, c) 0.30 -> b.
    pts = [[0.95, 9.0, 40.0], [0.94, 2.0, 40.0], [0.65, 1.0, 20.0]]
    assert knee_point(pts, MAX_MIN_MIN, scale=[1.0, 10.0, 100.0]) == 1


def test_knee_scale_must_be_positive_per_objective() -> None:
    with pytest.raises(ConfigError, match="scale must be one positive number per objective"):
        knee_point([[0.9, 1.0], [0.8, 0.5]], MAX_MIN, scale=[1.0, 0.0])
    with pytest.raises(ConfigError, match="scale must be one positive number per objective"):
        knee_point([[0.9, 1.0], [0.8, 0.5]], MAX_MIN, scale=[1.0])


# ------------------------------------------------------------------------------- epsilon dominance


def test_thin_within_noise_merges_equal_latencies() -> None:
    from search.pareto import thin_within_noise

    # Same accuracy class, latencies 0.4406 vs 0.4411 ms (0.11 % apart) with a 1 % tolerance: one trade-off.
    # Row 1 is slightly less accurate but "faster" by 0.0005 ms: covered by row 0, which ranks first.
    pts = [[0.910, 0.4411, 50.0], [0.905, 0.4406, 50.0], [0.800, 0.2000, 30.0]]
    tol = [[0.0, 0.004411, 0.0], [0.0, 0.004406, 0.0], [0.0, 0.002, 0.0]]
    assert pareto_mask(pts, MAX_MIN_MIN).tolist() == [True, True, True]
    assert thin_within_noise(pts, MAX_MIN_MIN, tol, rank=[0, 1, 2]) == {1: 0}
    # Without tolerance nothing merges; ranked the other way round nothing merges either: row 0 is more
    # accurate and accuracy has no tolerance, so row 1 cannot cover it.
    assert thin_within_noise(pts, MAX_MIN_MIN, np.zeros((3, 3))) == {}
    assert thin_within_noise(pts, MAX_MIN_MIN, tol, rank=[1, 0, 2]) == {}


def test_thin_within_noise_keeps_a_real_trade_off_and_checks_input() -> None:
    from search.pareto import thin_within_noise

    # 15 % estimated latency error: 10 ms vs 8 ms (20 % apart) stays a trade-off, 10 vs 9.5 does not.
    pts = [[0.90, 10.0], [0.89, 8.0], [0.895, 9.5]]
    tol = [[0.0, 1.5], [0.0, 1.2], [0.0, 1.425]]
    assert pareto_mask(pts, MAX_MIN).tolist() == [True, True, True]
    assert thin_within_noise(pts, MAX_MIN, tol) == {2: 0}
    with pytest.raises(ConfigError, match="tolerance must be finite and >= 0"):
        thin_within_noise(pts, MAX_MIN, [[0.0, -1.0]] * 3)


# ------------------------------------------------------------------------------- the study's front


def _row(number: int, acc: float, ms: float, kb: float, ms_err: float | None = 15.0) -> TrialRow:
    figures = {
        "accuracy": {"value": acc, "unit": "fraction", "kind": "measured", "method": "m", "error_pct": None},
        "latency_ms": {"value": ms, "unit": "ms", "kind": "estimated", "method": "m", "error_pct": ms_err},
        "flash_kb": {"value": kb, "unit": "KiB", "kind": "estimated", "method": "m", "error_pct": 2.0},
        "sram_kb": {"value": 20.0, "unit": "KiB", "kind": "measured", "method": "m", "error_pct": None},
    }
    values = {"accuracy": acc, "latency_ms": ms, "flash_kb": kb}
    verdicts = {"flash": True, "sram": True, "latency": True}
    return TrialRow(number, "COMPLETE", {}, values, figures, verdicts, True, None, None)


def _judge(rows: list[TrialRow]) -> FrontReport:
    target = get_target("nucleo-l4r5zi")
    objectives = ["accuracy", "latency_ms", "flash_kb"]
    report = FrontReport("hand", target.to_dict(), objectives, [OBJECTIVES[n] for n in objectives], {}, rows)
    return judge_front(report, target)


def test_judge_front_knee_is_trial_6_of_the_issue() -> None:
    report = _judge([_row(4, 0.842, 0.83, 59.3, ms_err=None), _row(6, 0.936, 0.857, 62.1, ms_err=None)])
    assert report.front == [6, 4]
    assert report.knee == 6
    assert report.within_noise == {}


def test_judge_front_merges_latencies_equal_within_error() -> None:
    # 0.4406 vs 0.4411 ms with no stated error: the 1 % latency floor merges them; flash equal.
    rows = [_row(1, 0.91, 0.4411, 50.0, ms_err=None), _row(2, 0.905, 0.4406, 50.0, ms_err=None)]
    rows.append(_row(3, 0.80, 0.20, 30.0, ms_err=None))
    report = _judge(rows)
    assert sorted(report.front) == [1, 3]
    assert report.within_noise == {2: 1}
    assert report.knee == 1
