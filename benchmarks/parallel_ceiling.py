"""How much faster two processes finish than one on this machine: the ceiling for 2 search workers.

Runs the same fixed, single-threaded job once alone and then as two processes at the same time,
and prints the throughput ratio ``2 * T(alone) / T(both)`` (2.00 = two independent cores). Jobs:

- ``python``: a pure-Python loop (no libraries, no memory traffic to speak of);
- ``numpy``: 256x256 float32 matrix products with BLAS limited to one thread;
- ``keras``: what a worker does most, ``fit`` of the digits demo's mobilenet_v1 (width 0.5) with
  TensorFlow's thread pools set to one thread each (``TINYFRONT_THREADS=1``, as ``--workers 2``
  sets on 2 cores).

It also prints the CPU time the kernel counted as stolen by the hypervisor during each run
(``/proc/stat``) and the load average before starting. Several repeats; p50 of each ratio. Asserts
nothing. If the ``python`` job does not reach about 2.0, the machine itself gives two processes less
than two cores, and no worker design can reach more than that ratio.

    python benchmarks/parallel_ceiling.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOBS = {
    "python": "s = 0\nfor i in range(30_000_000):\n    s += i * i % 7\n",
    "numpy": (
        "import numpy as np\nrng = np.random.default_rng(0)\na = rng.random((256, 256), dtype=np.float32)\n"
        "for _ in range(3000):\n    a = (a @ a) / 256.0\n"
    ),
    "keras": (
        "from search._lazy import keras\nfrom search.data import load_demo\nfrom search.families import build_model\n"
        "d = load_demo(seed=0)\nk = keras()\nk.utils.set_random_seed(0)\n"
        "m = build_model('mobilenet_v1', d.x_train.shape[1:], d.num_classes, 0.5, seed=0)\n"
        "m.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        "m.fit(d.x_train, d.y_train, epochs=1, batch_size=64, verbose=0)\n"
        "import time; t = time.perf_counter()\n"
        "m.fit(d.x_train, d.y_train, epochs=12, batch_size=64, verbose=0)\n"
        "print('FIT', time.perf_counter() - t)\n"
    ),
}


def _steal() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) if len(fields) > 8 else 0


def _run(kind: str, copies: int) -> tuple[float, float]:
    """(seconds of the slowest copy's timed part, hypervisor steal in seconds) for ``copies`` at once."""
    env = {
        **os.environ,
        "TINYFRONT_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(ROOT),
    }
    code = JOBS[kind] if kind == "keras" else f"import time\nt = time.perf_counter()\n{JOBS[kind]}\n"
    if kind != "keras":
        code += "print('FIT', time.perf_counter() - t)\n"
    steal0 = _steal()
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    times = []
    for p in procs:
        out, _ = p.communicate()
        times += [float(line.split()[1]) for line in out.splitlines() if line.startswith("FIT")]
    ticks = os.sysconf("SC_CLK_TCK")
    return max(times), (_steal() - steal0) / ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="python,numpy,keras")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'job':8} {'alone s':>8} {'two at once s':>14} {'throughput x':>13} {'steal s (alone/two)':>20}")
    for kind in args.jobs.split(","):
        ratios, alone, both, steals = [], [], [], []
        for _ in range(args.repeats):
            t1, s1 = _run(kind, 1)
            t2, s2 = _run(kind, 2)
            alone.append(t1)
            both.append(t2)
            ratios.append(2 * t1 / t2)
            steals.append(f"{s1:.1f}/{s2:.1f}")
            time.sleep(1)
        print(
            f"{kind:8} {statistics.median(alone):8.2f} {statistics.median(both):14.2f} "
            f"{statistics.median(ratios):13.2f} {' '.join(steals):>20}"
        )


if __name__ == "__main__":
    main()
