"""Pareto front, hypervolume and knee point of objective vectors (numpy only).

Every function takes ``points`` of shape ``(n, m)`` (one row per candidate, one column per
objective) and ``directions``: one ``"maximize"`` or ``"minimize"`` per column. Internally each
column is turned into a loss (maximised columns are negated), so "better" always means "lower".

- :func:`pareto_mask`: which rows no other row dominates (a row dominates another when it is at
  least as good in every objective and strictly better in one). Identical rows do not dominate
  each other, so duplicates of a front point are all kept.
- :func:`hypervolume`: the exact volume dominated by the rows and bounded by ``reference``
  (HSO slicing: sort by the last objective, sum slabs of the (m-1)-D volume; exact in any
  dimension, cost grows like n^(m-1), fine for the few dozen front points of a study).
  Rows that do not strictly beat the reference in every objective add nothing.
- :func:`thin_within_noise`: epsilon-dominance. Two front points whose objectives differ by less
  than the stated measurement error (``tolerance``, absolute, per point and objective) are not
  distinct trade-offs. Points are visited best first (``rank``); a point is kept unless a point
  already kept is, in every objective, no worse than it by more than the larger of the two
  tolerances. Returns which point covers each dropped one.
- :func:`knee_point`: with ``scale`` (the front's default: accuracy 1, each cost its budget), the
  compromise point: the front point nearest to the front's ideal point (best value of every
  objective) when each objective is divided by its scale, so 0.027 ms against a 500 ms budget
  weighs 0.005 % and 9.4 accuracy points weigh 9.4 %. Without ``scale`` (no budgets known), the
  classic construction: every objective scaled to [0, 1] over the front, and the point farthest
  on the good side of the hyperplane through the front's extreme points (with two objectives,
  "maximum distance to the line joining the two ends"); when the extremes do not span a
  hyperplane, the point closest to the ideal point instead. Range scaling lets a tiny spread
  in one cost weigh as much as a large one in accuracy, hence the budget scale wherever budgets
  exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")


def _as_losses(points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(directions))
    if arr.ndim != 2:
        raise ConfigError(f"points must be a 2-D array (n points x m objectives), got shape {arr.shape}")
    if arr.shape[1] != len(directions):
        raise ConfigError(f"expected {arr.shape[1]} directions (one per objective column), got {len(directions)}")
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"direction must be 'maximize' or 'minimize', got {d!r}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"points must be finite, found {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return arr * signs


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """A boolean array, True for the rows that no other row dominates."""
    loss = _as_losses(points, directions)
    n = loss.shape[0]
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = np.all(loss <= loss[i], axis=1)
        better = np.any(loss < loss[i], axis=1)
        if np.any(no_worse & better):
            mask[i] = False
    return mask


def _hv_losses(loss: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of loss vectors strictly below ``ref`` in every coordinate."""
    n, m = loss.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - loss[:, 0].min())
    if m == 2:
        order = np.lexsort((loss[:, 1], loss[:, 0]))
        total, best_y = 0.0, ref[1]
        for x, y in loss[order]:
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(total)
    order = np.argsort(loss[:, -1], kind="stable")
    s = loss[order]
    total = 0.0
    for i in range(n):
        upper = s[i + 1, -1] if i + 1 < n else ref[-1]
        depth = upper - s[i, -1]
        if depth <= 0:
            continue
        head = s[: i + 1, :-1]
        head = head[_front_rows(head)]
        total += _hv_losses(head, ref[:-1]) * depth
    return float(total)


def _front_rows(loss: np.ndarray) -> np.ndarray:
    return pareto_mask(loss, ["minimize"] * loss.shape[1])


def hypervolume(
    points: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[str],
    reference: Sequence[float],
) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (in the objectives' own units).

    ``reference`` is a point every useful row must beat: for a maximised objective it is a lower
    bound (e.g. accuracy 0), for a minimised one an upper bound (e.g. the budget).
    """
    loss = _as_losses(points, directions)
    ref = _as_losses([list(reference)], directions)[0]
    inside = np.all(loss < ref, axis=1)
    loss = loss[inside]
    if loss.shape[0] == 0:
        return 0.0
    loss = loss[_front_rows(loss)]
    return _hv_losses(np.unique(loss, axis=0), ref)


def thin_within_noise(
    points: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[str],
    tolerance: np.ndarray | Sequence[Sequence[float]],
    rank: Sequence[float] | None = None,
) -> dict[int, int]:
    """Which rows are within ``tolerance`` of a better-ranked kept row: ``{dropped: covering row}``.

    ``tolerance`` has the shape of ``points`` (absolute, >= 0, in the objectives' units).
    ``rank``: lower is visited first (default: row order). Rows dominated outright are not looked
    at: pass front points (see :func:`pareto_mask`).
    """
    loss = _as_losses(points, directions)
    tol = np.asarray(tolerance, dtype=float).reshape(loss.shape)
    if np.any(tol < 0) or not np.all(np.isfinite(tol)):
        raise ConfigError("tolerance must be finite and >= 0 for every point and objective")
    order = np.argsort(np.asarray(rank if rank is not None else np.arange(loss.shape[0]), dtype=float), kind="stable")
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for i in order:
        cover = next(
            (k for k in kept if np.all(loss[k] <= loss[i] + np.maximum(tol[k], tol[i]))),
            None,
        )
        if cover is None:
            kept.append(int(i))
        else:
            dropped[int(i)] = int(cover)
    return dropped


def knee_point(
    points: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[str],
    scale: Sequence[float] | None = None,
) -> int | None:
    """Index (into ``points``) of the knee of their Pareto front, or None when there are no points.

    See the module docstring for the definition (``scale``: one positive number per objective,
    e.g. 1 for accuracy and the budget for each cost). Ties go to the lowest sum of scaled
    losses, then to the lowest index.
    """
    loss = _as_losses(points, directions)
    if loss.shape[0] == 0:
        return None
    front_idx = np.flatnonzero(pareto_mask(loss, ["minimize"] * loss.shape[1]))
    front = loss[front_idx]
    if front.shape[0] == 1:
        return int(front_idx[0])
    if scale is not None:
        units = np.asarray(scale, dtype=float)
        if units.shape != (loss.shape[1],) or np.any(~np.isfinite(units)) or np.any(units <= 0):
            raise ConfigError(f"scale must be one positive number per objective, got {list(scale)}")
        gaps = (front - front.min(axis=0)) / units
        distance = np.linalg.norm(gaps, axis=1)
        order = np.lexsort((front_idx, gaps.sum(axis=1), np.round(distance, 12)))
        return int(front_idx[order[0]])
    low, high = front.min(axis=0), front.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (front - low) / span
    m = scaled.shape[1]
    extremes = np.unique(scaled[np.argmin(scaled, axis=0)], axis=0)
    score: np.ndarray | None = None
    if extremes.shape[0] == m:
        # Hyperplane n . x = 1 through the m extreme points (scaled losses, so the ideal is the origin).
        try:
            normal = np.linalg.solve(extremes, np.ones(m))
        except np.linalg.LinAlgError:
            normal = None
        if normal is not None and np.all(np.isfinite(normal)) and np.linalg.norm(normal) > 0:
            # Signed distance, positive on the ideal point's side of the plane.
            score = (1.0 - scaled @ normal) / np.linalg.norm(normal)
    if score is None:
        score = -np.linalg.norm(scaled, axis=1)
    order = np.lexsort((front_idx, scaled.sum(axis=1), -np.round(score, 12)))
    return int(front_idx[order[0]])
