"""The search progress bar shared by the CLI and the notebook magics."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def search_progress(
    total: int, desc: str, *, notebook: bool = False
) -> Iterator[tuple[Callable[[Any], None], Callable[[str], None]]]:
    """A tqdm bar on stderr: trials done, feasible so far, best feasible accuracy, running trials and
    the current stage. Yields ``(on_progress, on_stage)`` for :func:`search.workers.run_search`.
    With ``notebook`` it is ``tqdm.auto`` (a widget where ipywidgets is installed, else text)."""
    if notebook:
        with warnings.catch_warnings():  # without ipywidgets tqdm.auto warns once, then falls back to text
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    bar = tqdm(total=total, desc=desc, unit="trial", file=sys.stderr, dynamic_ncols=True)
    state: dict[str, str] = {}

    def on_progress(p: Any) -> None:
        bar.n = min(p.done, total)
        state["feasible"] = str(p.feasible)
        state["best acc"] = f"{p.best_accuracy * 100:.1f}%" if p.best_accuracy is not None else "-"
        if p.running:
            state["running"] = str(p.running)
        else:
            state.pop("running", None)
        bar.set_postfix(state, refresh=True)

    def on_stage(stage: str) -> None:
        state["stage"] = stage
        bar.set_postfix(state, refresh=True)

    try:
        yield on_progress, on_stage
    finally:
        bar.close()
