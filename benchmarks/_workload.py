"""What the per-candidate benchmarks share: the workload arguments, each workload's family, the header line."""

from __future__ import annotations

import argparse
import os
from typing import Any

#: The family each workload is built with unless ``--family`` says otherwise (MLPerf Tiny's choices).
DEFAULT_FAMILY = {"demo": "mobilenet_v1", "bench:kws": "ds_cnn", "bench:vww": "mobilenet_v1"}


def add_workload_arguments(parser: argparse.ArgumentParser, *, data: str) -> None:
    """``--data`` (default ``data``), ``--family``, ``--width`` (0.5) and ``--epochs`` (5, the base model's)."""
    parser.add_argument("--data", default=data, help="demo, bench:kws or bench:vww")
    parser.add_argument("--family", help="model family (default: ds_cnn for bench:kws, else mobilenet_v1)")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=5, help="base model epochs")


def family_for(args: argparse.Namespace) -> str:
    """``--family``, else the workload's default family."""
    return str(args.family or DEFAULT_FAMILY.get(args.data, "mobilenet_v1"))


def describe(args: argparse.Namespace, data: Any, family: str) -> str:
    """The header line: the data, the model, and this machine's cores and load."""
    return (
        f"{args.data}: {len(data.x_train)} training samples of {data.x_train.shape[1:]}, {data.num_classes} classes; "
        f"{family} width {args.width:g}, base {args.epochs} epochs; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
