"""tinyfront's user-facing faces: the CLI (``tinyfront``), the Streamlit app and the IPython magics."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext explorer``: register the ``%tinyfront`` and ``%%tinyfront_family`` magics.

    The magics module (and IPython) is imported here, not with the package, so ``import explorer`` stays light.
    """
    from explorer.magics import load_ipython_extension as _load

    _load(ipython)
