"""Early stopping (search.early_stop): what it saves, and whether it ever loses a front point.

1. Build every candidate of the full default space once for real, recording the Keras validation
   accuracy after each fine-tune epoch but the last (``Monitor(record=True)``: nothing is stopped).
   The grid is cached like ``search_efficiency.py``'s (same key, plus "checkpoints").
2. **Margin.** For every checkpoint: what the rest of the fine-tune, conversion and deployment added
   (final deployed accuracy minus checkpoint Keras accuracy). The rule assumes at most
   ``search.early_stop.MARGIN``.
3. **Worst case over every order.** A grid point on the grid's feasible front is *stoppable* if some
   other feasible grid point costs no more (every cost objective) and is more accurate than its
   checkpoint + margin. If none is, no search order can lose a front point of this grid. The script
   also checks the invariant the rule rests on: all sparsities of a structure have the same flash,
   SRAM and latency.
4. **Searches.** The default sampler (and others) run against the grid for several seeds, with and
   without the rule, the rule being ``search.early_stop.stop_rule`` on the simulated study's
   finished trials. Time is the grid's real seconds: a completed candidate costs its stage seconds
   (base training charged once per width and run); a stopped one costs the seconds to its
   checkpoint, or nothing when stopped before training. For every stopped candidate the script asks
   whether its full result would have been on that run's final front (a lost point).

Prints; asserts nothing.

    python benchmarks/early_stop.py --out /tmp/es                         # digits, nucleo-l4r5zi
    python benchmarks/early_stop.py --data bench:kws --family ds_cnn --flash-kb 130 --sram-kb 30 --latency-ms 100
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from search_efficiency import Key, _grid, evaluate_grid, sub_space, tighten  # noqa: E402

from search.early_stop import CHECKED_PHASE, MARGIN, stop_rule  # noqa: E402
from search.front import budget_hypervolume  # noqa: E402
from search.pareto import pareto_mask  # noqa: E402
from search.result import BUDGETS, OBJECTIVES, CandidateResult  # noqa: E402
from search.space import SearchSpace, suggest  # noqa: E402
from search.study import DEFAULT_OBJECTIVES, make_sampler  # noqa: E402
from search.targets import Target, get_target  # noqa: E402


def _costs(r: CandidateResult, objectives: list[str]) -> list[float]:
    return [r.objective_value(o) for o in objectives if o != "accuracy"]


def _accuracy(r: CandidateResult) -> float:
    return r.objective_value("accuracy")


def _front(points: dict[Any, CandidateResult], objectives: list[str]) -> set[Any]:
    keys = [k for k, r in points.items() if r.feasible]
    if not keys:
        return set()
    values = np.array([[points[k].objective_value(o) for o in objectives] for k in keys])
    mask = pareto_mask(values, [OBJECTIVES[o] for o in objectives])
    return {k for k, on in zip(keys, mask, strict=True) if on}


def margin_table(table: dict[Key, CandidateResult]) -> None:
    """What the rest of a fine-tune, conversion and deployment added to each checkpoint, per phase."""
    phases: dict[str, list[float]] = {}
    for r in table.values():
        for c in r.checkpoints:
            phases.setdefault(c["phase"], []).append(_accuracy(r) - c["keras_accuracy"])
    if not phases:
        print("margin: no checkpoints in the grid (fine-tune epochs < 2?)")
    for phase, gains in sorted(phases.items()):
        g = sorted(gains)
        used = phase == CHECKED_PHASE
        verdict = ("covers" if g[-1] < MARGIN else "DOES NOT cover") + " every gain seen"
        print(
            f"margin, {phase} checkpoints ({'used by the rule' if used else 'not used by the rule'}): {len(g)}; "
            f"final deployed minus checkpoint Keras accuracy: median {statistics.median(g) * 100:+.1f}, "
            f"p95 {g[int(0.95 * (len(g) - 1))] * 100:+.1f}, max {g[-1] * 100:+.1f} points"
            + (f"; the rule's margin of {MARGIN * 100:.0f} points {verdict}" if used else "")
        )


def worst_case(table: dict[Key, CandidateResult], objectives: list[str]) -> None:
    structures: dict[tuple[float, str], set[tuple[float, ...]]] = {}
    for (w, _s, p), r in table.items():
        structures.setdefault((w, p), set()).add(tuple(r.figures[f].value for f in BUDGETS.values()))
    differ = [k for k, v in structures.items() if len(v) > 1]
    print(
        f"invariant: {len(structures) - len(differ)} of {len(structures)} structures (width x precision) have "
        f"the same flash, SRAM and latency at every sparsity" + (f"; differ: {differ}" if differ else "")
    )
    front = _front(table, objectives)
    feasible = [r for r in table.values() if r.feasible]
    stoppable = []
    for k in front:
        r = table[k]
        for c in (c for c in r.checkpoints if c["phase"] == CHECKED_PHASE):
            bar = [
                t
                for t in feasible
                if t is not r
                and all(a <= b for a, b in zip(_costs(t, objectives), _costs(r, objectives), strict=True))
                and _accuracy(t) > c["keras_accuracy"] + MARGIN
            ]
            if bar:
                stoppable.append(k)
                break
    n_ck = sum(any(c["phase"] == CHECKED_PHASE for c in r.checkpoints) for r in table.values())
    print(
        f"worst case over every order: {len(front)} grid front points, {len(stoppable)} stoppable by some other "
        f"grid point {sorted(stoppable) if stoppable else ''}; {n_ck} of {len(table)} points have a checkpoint "
        "the rule uses"
    )


@dataclasses.dataclass
class Run:
    complete: dict[Key, CandidateResult]
    stopped: list[Key]
    before_training: int
    seconds: float
    trials: int


def _frozen_attrs(r: CandidateResult) -> dict[str, Any]:
    figures = {k: {"value": f.value} for k, f in r.figures.items()}
    return {"spec": r.spec.to_dict(), "result": {"figures": figures}, "constraints": r.constraint_values()}


def run(
    sampler: str,
    seed: int,
    n_trials: int,
    space: SearchSpace,
    table: dict[Key, CandidateResult],
    objectives: list[str],
    target: Target,
    early: bool,
) -> Run:
    directions: Any = [OBJECTIVES[o] for o in objectives]
    study = optuna.create_study(directions=directions, sampler=make_sampler(sampler, seed))
    trained: set[float] = set()
    train_cost = {
        w: max(r.stage_seconds.get("train", 0.0) for (w2, _, _), r in table.items() if w2 == w)
        for w in {k[0] for k in table}
    }
    state: dict[str, Any] = {"seconds": 0.0, "before": 0}
    complete: dict[Key, CandidateResult] = {}
    stopped: list[Key] = []

    def charge(key: Key, seconds: float, r: CandidateResult) -> None:
        own = seconds - r.stage_seconds.get("train", 0.0)
        first = key[0] not in trained
        trained.add(key[0])
        state["seconds"] += max(0.0, own) + (train_cost[key[0]] if first else 0.0)

    def objective(trial: optuna.trial.Trial) -> tuple[float, ...]:
        p = suggest(trial, space)
        key: Key = (p["width"], p["sparsity"], p["precision"])
        r = table[key]
        if key in complete:  # served from its earlier trial (search.study): no build
            return tuple(r.objective_value(o) for o in objectives)
        rule = None
        if early:
            finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
            rule = stop_rule(finished, r.spec, objectives, target)
        if rule is not None:
            reason = rule.before_training()
            if reason is None:
                for c in r.checkpoints:
                    if rule.after_epoch(c["keras_accuracy"], c["phase"], c["epoch"], c["of"]):
                        charge(key, c["seconds"], r)
                        reason = "checkpoint"
                        break
            else:
                state["before"] += 1
            if reason is not None:
                stopped.append(key)
                for budget, value in zip(BUDGETS, rule.constraints, strict=True):
                    trial.set_constraint(budget, value)
                raise optuna.TrialPruned()
        charge(key, sum(r.stage_seconds.values()), r)
        complete[key] = r
        for name, value in _frozen_attrs(r).items():
            trial.set_user_attr(name, value)
        for budget, value in zip(BUDGETS, r.constraint_values(), strict=True):
            trial.set_constraint(budget, value)
        return tuple(r.objective_value(o) for o in objectives)

    study.optimize(objective, n_trials=n_trials)
    return Run(complete, stopped, state["before"], state["seconds"], len(study.trials))


def lost_points(r: Run, table: dict[Key, CandidateResult], objectives: list[str]) -> int:
    """Stopped candidates whose full result would have been on the run's final front."""
    lost = 0
    for k in r.stopped:
        pool = dict(r.complete)
        pool[k] = table[k]
        lost += k in _front(pool, objectives)
    return lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nucleo-l4r5zi")
    ap.add_argument("--data", default=None, help="dataset spec (default: the digits demo)")
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--trials", default="36,54", help="comma-separated trial budgets")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--samplers", default="tpe,random")
    ap.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES))
    ap.add_argument("--flash-kb", type=float, help="judge the grid against this model flash budget (KiB)")
    ap.add_argument("--sram-kb", type=float, help="judge the grid against this model SRAM budget (KiB)")
    ap.add_argument("--latency-ms", type=float, help="judge the grid against this latency budget")
    ap.add_argument("--out", default="tinyfront_bench/early_stop", help="output folder (grid cache)")
    ap.add_argument(
        "--width-max",
        type=float,
        help="only the grid's widths up to this one (the cache stays the whole space's: a later run adds the rest)",
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    target = get_target(args.target)
    full = SearchSpace().resolved(target)
    space = sub_space(full, args.width_max)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = evaluate_grid(space, target, args, out, checkpoints=True, key_space=full)
    target, table = tighten(target, table, args)
    objectives = args.objectives.split(",")
    feasible = [[r.objective_value(o) for o in objectives] for r in table.values() if r.feasible]
    grid_hv = budget_hypervolume(feasible, objectives, target)
    print(
        f"target {target.name} (model budgets flash {target.flash_budget_kb:g} KiB, SRAM {target.sram_budget_kb:g} "
        f"KiB, latency {target.latency_budget_ms:g} ms); data {args.data or 'demo:digits'}, {args.family}, "
        f"{args.epochs}+{args.finetune_epochs} epochs; {len(feasible)} of {len(table)} grid points feasible"
    )
    margin_table(table)
    worst_case(table, objectives)
    n_grid = len(_grid(space))
    print(
        f"\nsearches: median over {args.seeds} seeds; seconds = the grid's real stage seconds of what was built "
        f"(grid of {n_grid}); HV/grid = budget-box hypervolume of the feasible front found / the grid's"
    )
    head = (
        f"{'sampler':8} {'trials':>6} {'rule':>4} {'stopped':>8} {'pre-train':>9} {'seconds':>8} {'time ratio':>10} "
        f"{'HV/grid':>8} {'lost front pts':>15}"
    )
    print(head)
    for n in (int(x) for x in args.trials.split(",")):
        for sampler in args.samplers.split(","):
            rows: dict[bool, list[tuple[Run, float]]] = {}
            for early in (False, True):
                rows[early] = []
                for seed in range(args.seeds):
                    r = run(sampler, seed, n, space, table, objectives, target, early)
                    pts = [[x.objective_value(o) for o in objectives] for x in r.complete.values() if x.feasible]
                    hv = budget_hypervolume(pts, objectives, target) / grid_hv if pts else 0.0
                    rows[early].append((r, hv))
            base_seconds = statistics.median(r.seconds for r, _ in rows[False])
            for early in (False, True):
                runs = rows[early]
                seconds = statistics.median(r.seconds for r, _ in runs)
                lost = sum(lost_points(r, table, objectives) for r, _ in runs)
                print(
                    f"{sampler:8} {n:6d} {'on' if early else 'off':>4} "
                    f"{statistics.median(len(r.stopped) for r, _ in runs):8.1f} "
                    f"{statistics.median(r.before_training for r, _ in runs):9.1f} {seconds:8.0f} "
                    f"{seconds / base_seconds:10.2f} {statistics.median(hv for _, hv in runs):8.3f} "
                    f"{lost if early else '-':>15}"
                )


if __name__ == "__main__":
    main()
