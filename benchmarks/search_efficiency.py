"""Search efficiency: hypervolume after N trials per sampler, as a fraction of the exhaustive grid's.

1. Evaluate every candidate of a small discrete demo space ONCE for real (train, prune, convert,
   measure with ``search.candidate.evaluate_candidate``; base models reused across sparsity and
   precision) and cache the results in ``<out>/grid-<key>.json``. Later runs reuse that file; the
   key covers the space, target, dataset, training settings and the source of ``search/``.
2. Run each sampler (tinyfront's own ``make_sampler`` and ``suggest``) against that lookup table
   for several seeds: a trial's objective values and constraints are the grid's real measurements
   of the point it suggests. Hypervolume is ``search.front.budget_hypervolume`` of the feasible
   front (the fraction of the budget box dominated), divided by the full grid's.

3. The same, counted in candidate builds rather than trials: tinyfront serves a point that
   already has a COMPLETE trial from that trial (``search.study``), so each sampler runs until it
   built N distinct candidates (at most ``--max-trials-factor`` * N trials, for samplers that keep
   repeating), and the script says whether the issue's goal holds for the default sampler: >= 95%
   of the grid's hypervolume with at most a quarter of the grid's builds.

Prints ratios (median over seeds), distinct points and trials used; asserts nothing.

    python benchmarks/search_efficiency.py                      # 24-point grid, 6 trials, 9 seeds
    python benchmarks/search_efficiency.py --trials 4,6,8,12 --seeds 25 --epochs 5
    # the grid benchmarks/early_stop.py built (5 + 2 epochs, checkpoints recorded): no second build
    python benchmarks/search_efficiency.py --full --checkpoints --epochs 5 --finetune-epochs 2 --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from search.front import budget_hypervolume  # noqa: E402
from search.result import OBJECTIVES, CandidateResult, CandidateSpec  # noqa: E402
from search.space import SearchSpace, suggest  # noqa: E402
from search.study import DEFAULT_OBJECTIVES, StudyConfig, make_sampler  # noqa: E402
from search.targets import Target, get_target  # noqa: E402

Key = tuple[float, float, str]
SEARCH_DIR = Path(__file__).resolve().parents[1] / "search"


def _grid(space: SearchSpace) -> list[Key]:
    assert space.width_step and space.sparsity_step and space.precisions
    nw = round((space.width_max - space.width_min) / space.width_step) + 1
    ns = round((space.sparsity_max - space.sparsity_min) / space.sparsity_step) + 1
    widths = [round(space.width_min + i * space.width_step, 6) for i in range(nw)]
    sparsities = [round(space.sparsity_min + i * space.sparsity_step, 6) for i in range(ns)]
    return list(product(widths, sparsities, space.precisions))


def evaluate_grid(
    space: SearchSpace,
    target: Target,
    args: argparse.Namespace,
    out: Path,
    *,
    checkpoints: bool = False,
    key_space: SearchSpace | None = None,
) -> dict[Key, CandidateResult]:
    """Real results for every grid point, from ``out``'s cache file when it has them.

    With ``checkpoints`` every fine-tune's epochs but the last are checked for Keras accuracy
    (``search.early_stop.Monitor(record=True)``, nothing is stopped); ``benchmarks/early_stop.py`` uses them.
    With ``key_space`` (a space whose grid holds ``space``'s) the cache file is that space's: a
    sub-space (``--width-max``) reads and adds to the full grid's cache, and builds only its own points.
    """
    from search import training
    from search.candidate import evaluate_candidate
    from search.data import load_dataset
    from search.early_stop import Monitor

    # Each grid point's stage seconds are its full cost (the searches simulated on the grid charge
    # them), so no point starts from another's pruned weights.
    training.REUSE_PRUNED_WEIGHTS = False
    data = load_dataset(args.data)
    # The product code is part of the key: a changed family or training routine invalidates the grid.
    # search/early_stop.py is not: grid candidates run with no rule, and a rule is applied (by
    # benchmarks/early_stop.py) to the grid's recorded checkpoints afterwards.
    sources = [p for p in sorted(SEARCH_DIR.glob("*.py")) if p.name != "early_stop.py"]
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    # Budgets are not part of the key: the figures do not depend on them, and --flash-kb/--sram-kb/
    # --latency-ms re-judge the cached grid against tighter budgets without building it again.
    identity = {k: v for k, v in target.to_dict().items() if not k.endswith(("_kb", "_ms"))}
    blob = json.dumps(
        [(key_space or space).to_dict(), identity, data.fingerprint, args.family, args.epochs, args.finetune_epochs]
        + [code]
        + (["checkpoints"] if checkpoints else []),
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    cache = out / f"grid-{key}.json"
    stored: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    results: dict[Key, CandidateResult] = {}
    grid = _grid(space)
    for i, (w, s, p) in enumerate(grid):
        name = f"{w:g}-{s:g}-{p}"
        if name not in stored:
            spec = CandidateSpec(
                family=args.family, width=w, sparsity=s, precision=p, epochs=args.epochs,
                finetune_epochs=args.finetune_epochs,
            )  # fmt: skip
            start = time.perf_counter()
            try:
                res = evaluate_candidate(
                    spec,
                    target,
                    data,
                    out / key / name,
                    cache_dir=out / key / "base_models",
                    monitor=Monitor(record=checkpoints),
                )
                stored[name] = res.to_dict()
            except Exception as exc:  # a grid point that cannot be built is simply absent
                stored[name] = {"error": f"{type(exc).__name__}: {exc}"}
            stored[name]["seconds"] = round(time.perf_counter() - start, 2)
            cache.write_text(json.dumps(stored))
            print(f"  grid {i + 1}/{len(grid)} {name}: {stored[name]['seconds']:.1f} s", file=sys.stderr)
        if "error" not in stored[name]:
            results[(w, s, p)] = CandidateResult.from_dict(stored[name])
    print(f"grid: {len(grid)} points, {len(results)} built, cache {cache}")
    return results


def sub_space(space: SearchSpace, width_max: float | None) -> SearchSpace:
    """``space`` up to ``width_max`` (``--width-max``), or ``space`` itself; checked to be on its grid."""
    if width_max is None:
        return space
    widths = {k[0] for k in _grid(space)}
    if width_max not in widths:
        raise SystemExit(f"--width-max must be one of the grid's widths {sorted(widths)}, got {width_max:g}")
    return dataclasses.replace(space, width_max=width_max)


def tighten(
    target: Target, table: dict[Key, CandidateResult], args: argparse.Namespace
) -> tuple[Target, dict[Key, CandidateResult]]:
    """``target`` with the model budgets of ``--flash-kb/--sram-kb/--latency-ms`` and ``table`` judged
    against it: the same real figures, tighter budgets (a board's figure is the model budget plus the
    target's application reserve)."""
    tight = {
        k: v
        for k, v in (
            ("flash_kb", None if args.flash_kb is None else args.flash_kb + target.app_flash_kb),
            ("sram_kb", None if args.sram_kb is None else args.sram_kb + target.app_sram_kb),
            ("latency_budget_ms", args.latency_ms),
        )
        if v is not None
    }
    if not tight:
        return target, table
    target = dataclasses.replace(target, **tight)
    return target, {k: dataclasses.replace(r, target=target) for k, r in table.items()}


def spread_hypervolume(points: list[list[float]], grid: list[list[float]], objectives: list[str]) -> float:
    """Hypervolume with each objective scaled to [0, 1] over the grid's feasible points (0 = best),
    reference 1.1 in every objective: the usual benchmark normalisation, sensitive to the whole front."""
    import numpy as np

    from search.pareto import hypervolume

    sign = np.array([-1.0 if OBJECTIVES[o] == "maximize" else 1.0 for o in objectives])
    g = np.asarray(grid) * sign
    lo, span = g.min(axis=0), np.where(np.ptp(g, axis=0) > 0, np.ptp(g, axis=0), 1.0)
    scaled = (np.asarray(points) * sign - lo) / span
    return hypervolume(scaled, ["minimize"] * len(objectives), [1.1] * len(objectives))


@dataclass
class Run:
    """One sampler run: feasible objective vectors (None when infeasible), distinct points asked,
    evaluations (candidate builds) and trials."""

    points: list[list[float] | None]
    distinct: int
    evaluations: int
    trials: int


def run_sampler(
    name: str,
    seed: int,
    n_trials: int,
    space: SearchSpace,
    table: dict[Key, CandidateResult],
    objectives: list[str],
    max_evaluations: int | None = None,
) -> Run:
    """Run ``n_trials`` trials, or stop earlier once ``max_evaluations`` candidates were built.

    Builds are counted as ``search.study.make_objective`` counts them: a point that already has a
    COMPLETE trial is served from it (a duplicate, no build); every other trial, including a
    repeat of a point that failed to build, is a build.
    """
    directions: Any = [OBJECTIVES[o] for o in objectives]
    study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed))
    points: list[list[float] | None] = []
    asked: set[Key] = set()
    complete: set[Key] = set()
    builds = 0

    def objective(trial: optuna.trial.Trial) -> tuple[float, ...]:
        nonlocal builds
        p = suggest(trial, space)
        key = (p["width"], p["sparsity"], p["precision"])
        asked.add(key)
        if key not in complete:
            builds += 1
        if max_evaluations is not None and builds >= max_evaluations:
            trial.study.stop()  # ends the run after this trial
        if key not in table:
            raise RuntimeError("grid point failed to build")
        complete.add(key)
        res = table[key]
        for budget, value in zip(("flash", "sram", "latency"), res.constraint_values(), strict=True):
            trial.set_constraint(budget, value)
        values = [res.objective_value(o) for o in objectives]
        points.append(values if res.feasible else None)
        return tuple(values)

    study.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    return Run(points, len(asked), builds, len(study.trials))


def _ratios(
    points: list[list[float] | None],
    feasible: list[list[float]],
    objectives: list[str],
    target: Target,
    grid: tuple[float, float],
) -> tuple[float, float]:
    """(budget-box, spread) hypervolume of the feasible points found, each divided by the grid's."""
    found = [p for p in points if p is not None]
    if not found:
        return 0.0, 0.0
    grid_hv, grid_spread = grid
    hv = budget_hypervolume(found, objectives, target) / grid_hv
    return hv, spread_hypervolume(found, feasible, objectives) / grid_spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nucleo-l4r5zi")
    ap.add_argument("--data", default=None, help="dataset spec (default: the digits demo)")
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--widths", default="0.25,1.0,0.25", help="min,max,step (default: 0.25,1.0,0.25)")
    ap.add_argument("--sparsities", default="0,0.5,0.5", help="min,max,step (default: 0,0.5,0.5)")
    ap.add_argument("--precisions", default="float32,int8,int16x8")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--trials", default="", help="comma-separated trial budgets (default: grid/4 and grid/2)")
    ap.add_argument("--seeds", type=int, default=25)
    ap.add_argument("--samplers", default="tpe,nsga2,random")
    ap.add_argument(
        "--max-trials-factor", type=int, default=4, help="by-evaluations table: at most this many trials per build"
    )
    ap.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES))
    ap.add_argument(
        "--full", action="store_true", help="the full default space (width 4 x sparsity 9 x the runtime's precisions)"
    )
    ap.add_argument("--flash-kb", type=float, help="judge the grid against this model flash budget (KiB)")
    ap.add_argument("--sram-kb", type=float, help="judge the grid against this model SRAM budget (KiB)")
    ap.add_argument("--latency-ms", type=float, help="judge the grid against this latency budget")
    ap.add_argument("--out", default="tinyfront_bench/search_efficiency", help="output folder (grid cache)")
    ap.add_argument(
        "--width-max",
        type=float,
        help="only the grid's widths up to this one (the cache stays the whole space's: a later run adds the rest)",
    )
    ap.add_argument(
        "--checkpoints",
        action="store_true",
        help="use (or build) the grid with fine-tune checkpoints recorded, the one benchmarks/early_stop.py "
        "builds: with the same --out, --epochs and --finetune-epochs one grid serves both scripts",
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    w0, w1, ws = (float(x) for x in args.widths.split(","))
    s0, s1, ss = (float(x) for x in args.sparsities.split(","))
    space = (
        SearchSpace()
        if args.full
        else SearchSpace(w0, w1, ws, s0, s1, ss, precisions=tuple(args.precisions.split(",")))
    )
    target = get_target(args.target)
    full = space.resolved(target)
    space = sub_space(full, args.width_max)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = evaluate_grid(space, target, args, out, checkpoints=args.checkpoints, key_space=full)
    target, table = tighten(target, table, args)
    if (args.flash_kb, args.sram_kb, args.latency_ms) != (None, None, None):
        print(
            f"model budgets: flash {target.flash_budget_kb:g} KiB, SRAM {target.sram_budget_kb:g} KiB, "
            f"latency {target.latency_budget_ms:g} ms"
        )
    objectives = args.objectives.split(",")
    feasible = [[r.objective_value(o) for o in objectives] for r in table.values() if r.feasible]
    grid_hv = budget_hypervolume(feasible, objectives, target) if feasible else 0.0
    n_grid = len(_grid(space))
    print(
        f"target {target.name}; objectives {', '.join(objectives)}; "
        f"{len(feasible)} of {len(table)} grid points feasible"
    )
    print(f"grid hypervolume {grid_hv:.4f} (fraction of the budget box)")
    grid_spread = spread_hypervolume(feasible, feasible, objectives)
    if grid_hv == 0:
        print("no feasible grid point: nothing to compare")
        return
    budgets = [int(x) for x in args.trials.split(",")] if args.trials else sorted({max(1, n_grid // 4), n_grid // 2})
    print("HV/grid: budget-box hypervolume ratio; spread: same with objectives scaled over the grid's range")
    samplers = args.samplers.split(",")
    head = f"{'sampler':8} {'trials':>6} {'of grid':>8} {'HV/grid':>8} {'>=95%':>6} {'spread/grid':>12} {'>=95%':>6}"
    print(f"\n{head} {'distinct pts':>13}")
    for n in budgets:
        for sampler in samplers:
            ratios, spreads, distinct = [], [], []
            for seed in range(args.seeds):
                run = run_sampler(sampler, seed, n, space, table, objectives)
                hv, spread = _ratios(run.points, feasible, objectives, target, (grid_hv, grid_spread))
                ratios.append(hv)
                spreads.append(spread)
                distinct.append(run.distinct)
            hit = sum(r >= 0.95 for r in ratios) / len(ratios)
            hit_s = sum(r >= 0.95 for r in spreads) / len(spreads)
            print(
                f"{sampler:8} {n:6d} {n / n_grid:8.0%} {statistics.median(ratios):8.3f} {hit:6.0%} "
                f"{statistics.median(spreads):12.3f} {hit_s:6.0%} {statistics.median(distinct):13.1f}"
            )

    # Against candidate builds: a repeated point is served from its earlier trial (search.study), so
    # what a search costs is the number of distinct builds, not of trials.
    goal_n = max(1, n_grid // 4)
    eval_budgets = sorted(set(budgets) | {goal_n})
    cap = args.max_trials_factor
    print(
        f"\nby evaluations: trials run until N candidates were built (served repeats are free), "
        f"at most {cap}*N trials; 'reached' = seeds that built N within the cap"
    )
    head = f"{'sampler':8} {'evals':>6} {'of grid':>8} {'HV/grid':>8} {'>=95%':>6} {'spread/grid':>12} {'>=95%':>6}"
    print(f"\n{head} {'trials':>7} {'reached':>8}")
    goal: dict[str, tuple[float, float]] = {}
    medians: dict[tuple[int, str], float] = {}
    for n in eval_budgets:
        for sampler in samplers:
            ratios, spreads, trials, reached = [], [], [], 0
            for seed in range(args.seeds):
                run = run_sampler(sampler, seed, cap * n, space, table, objectives, max_evaluations=n)
                hv, spread = _ratios(run.points, feasible, objectives, target, (grid_hv, grid_spread))
                ratios.append(hv)
                spreads.append(spread)
                trials.append(run.trials)
                reached += run.evaluations >= n
            hit = sum(r >= 0.95 for r in ratios) / len(ratios)
            hit_s = sum(r >= 0.95 for r in spreads) / len(spreads)
            print(
                f"{sampler:8} {n:6d} {n / n_grid:8.0%} {statistics.median(ratios):8.3f} {hit:6.0%} "
                f"{statistics.median(spreads):12.3f} {hit_s:6.0%} {statistics.median(trials):7.1f} "
                f"{reached / args.seeds:8.0%}"
            )
            medians[(n, sampler)] = statistics.median(ratios)
            if n == goal_n:
                goal[sampler] = (statistics.median(ratios), statistics.median(spreads))

    default = StudyConfig.sampler
    if default in goal:
        hv, spread = goal[default]
        verdict = {True: "met", False: "NOT met"}
        print(
            f"\ngoal (>= 95% of the grid's hypervolume with <= 1/4 of its evaluations, i.e. {goal_n} of {n_grid} "
            f"builds; median over {args.seeds} seeds), default sampler {default}: budget-box {hv:.3f} "
            f"{verdict[hv >= 0.95]}; spread {spread:.3f} {verdict[spread >= 0.95]}"
        )
        others = [x for x in samplers if x != default]
        behind = [
            f"{n} builds: {x} {medians[(n, x)]:.3f} >= {default} {medians[(n, default)]:.3f}"
            for n in eval_budgets
            for x in others
            if medians[(n, x)] >= medians[(n, default)]
        ]
        print(
            f"goal ({default} above {', '.join(others)} at every budget, median budget-box ratio): "
            + ("met" if not behind else "NOT met: " + "; ".join(behind))
        )


if __name__ == "__main__":
    main()
