"""``tinyfront evaluate``: build, convert and measure one candidate for one target."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.commands._args import finite_float, nonnegative_int, positive_int, seed
from search.result import PRECISIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="train, prune, quantise, convert and measure one candidate")
    p.add_argument("--target", required=True, help="target name from the targets file")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument(
        "--data",
        default=None,
        help="dataset: 'demo' (default), 'bench:kws', 'bench:vww', a .npz file or an image folder",
    )
    p.add_argument("--family", default="mobilenet_v1", help="mobilenet_v1, ds_cnn or module:function")
    p.add_argument("--width", type=finite_float, default=0.5, help="width multiplier (default 0.5)")
    p.add_argument("--sparsity", type=finite_float, default=0.0, help="fraction of weights pruned to zero (default 0)")
    p.add_argument("--precision", choices=PRECISIONS, default="int8")
    p.add_argument(
        "--depth", type=positive_int, default=None, help="depthwise-separable blocks (default: family's, by input)"
    )
    p.add_argument("--resolution", type=positive_int, default=None, help="input side in pixels (default: the data's)")
    p.add_argument("--epochs", type=positive_int, default=5, help="training epochs of the base model (default 5)")
    p.add_argument(
        "--finetune-epochs", type=nonnegative_int, default=2, help="pruning / QAT fine-tune epochs (default 2)"
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", type=Path, default=Path("tinyfront_artifacts/evaluate"), help="artifacts folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explorer.report import summary
    from search.candidate import check_deployable, evaluate_candidate
    from search.data import load_dataset
    from search.result import CandidateSpec
    from search.study import check_family
    from search.targets import get_target

    target = get_target(args.target, args.targets)
    check_family(args.family)
    spec = CandidateSpec(
        family=args.family,
        width=args.width,
        sparsity=args.sparsity,
        precision=args.precision,
        depth=args.depth,
        resolution=args.resolution,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
    )
    check_deployable(spec, target)  # refuse before loading data or TensorFlow
    dataset = load_dataset(args.data, seed=args.seed)

    def progress(stage: str) -> None:
        print(f"[tinyfront] {stage} ...", file=sys.stderr, flush=True)

    family = spec.family.replace(":", ".")
    out = args.out / f"{target.name}-{family}-w{spec.width:g}-s{spec.sparsity:g}-{spec.precision}"
    result = evaluate_candidate(spec, target, dataset, out, cache_dir=args.out / "base_models", progress=progress)
    print(json.dumps(result.to_dict(), indent=2) if args.json else summary(result))
    return 0
