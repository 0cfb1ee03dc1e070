"""``search._lazy.tfmot`` imports tfmot without Keras 3, and tfmot ends up configured as by a plain import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_REPORT = (
    "from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as r\n"
    "names = sorted(f'{k.__module__}.{k.__name__}' for k in r.PruneRegistry._LAYERS_WEIGHTS_MAP)\n"
    "print('keras' in sys.modules, 'sklearn' in sys.modules, 'keras.engine' in sys.modules)\n"
    "print(r.base_layer is None, len(names), hash(tuple(names)))\n"
)
_LAZY = "import sys\nfrom search._lazy import tfmot\ntfmot()\n" + _REPORT
_PLAIN = "import os, sys\nos.environ['TF_USE_LEGACY_KERAS'] = '1'\nimport tensorflow_model_optimization\n" + _REPORT


def _run(code: str) -> list[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


@pytest.mark.slow
def test_tfmot_imports_without_keras3_and_registers_the_same_layers() -> None:
    lazy, plain = _run(_LAZY), _run(_PLAIN)
    assert lazy[0] == "False False False"  # no Keras 3, no scikit-learn, no stub left behind
    assert lazy[1] == plain[1]  # the same pruning registry: same layer classes, no Keras 2 base layer
    assert lazy[1].startswith("True ")
