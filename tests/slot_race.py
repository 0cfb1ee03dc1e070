"""``python slot_race.py URL START``: one worker of a 1-trial study that races another for its slot.

Test harness for the trial-slot lock (tests/test_study.py, tests/test_postgres.py): it waits until
the wall-clock time START, so two of them count the study's trials at the same moment, and then
waits 0.3 s between counting and creating its trial (Optuna's ``Study.optimize`` slowed down), so
without the lock both would see the one slot free and both take it. Prints the numbers of the
trials it ran.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import optuna

from search.storage import make_storage
from search.workers import optimize_until


def main() -> None:
    url, start = sys.argv[1], float(sys.argv[2])
    study = optuna.load_study(study_name="race", storage=make_storage(url))
    optimize = optuna.Study.optimize
    ran: list[int] = []

    def slow(self: optuna.Study, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)  # after the count, before the trial exists
        optimize(self, *args, **kwargs)

    def objective(trial: optuna.trial.Trial) -> float:
        ran.append(trial.number)
        time.sleep(0.3)
        return 1.0

    optuna.Study.optimize = slow  # type: ignore[method-assign]
    time.sleep(max(0.0, start - time.time()))
    optimize_until(study, objective, 1, wait_seconds=0.05)
    print("ran", ran)


if __name__ == "__main__":
    main()
