"""Running a study: in this process, in N local worker processes, or as one worker of a shared study.

Every worker runs the same loop (:func:`optimize_until`): fail stale trials (heartbeat), count
the trials that used the budget (``search.storage.counts_toward_budget``) plus those running in
other workers, and run one more trial while that sum is below ``n_trials``. Counting the running
trials keeps N workers from overshooting the budget, and the study's trial-slot lock
(:func:`search.storage.trial_slots`, held from the count until the new trial exists) keeps two
workers that count at the same moment from both taking the last slot: on SQLite and PostgreSQL a
study ends with exactly ``n_trials`` (other databases get no lock: ``n_trials + workers - 1`` at
worst, never fewer). A RUNNING trial of a dead worker holds its slot until the heartbeat grace
period fails it, then the slot is refilled.

Seeds: worker ``i`` seeds its sampler with ``seed + 1000 * i + <trials already in the study>``, so
a resumed study does not replay the random start-up points it already evaluated and parallel
workers do not propose the same points. With one worker on a fresh study the parameter sequence
is a function of the seed (and, after the start-up trials, of the measured objective values).

Failures: a candidate that raises is a FAIL trial and the loop goes on; Optuna's warning about it
is kept to one line (its traceback goes to this module's DEBUG log). A storage fault (database
locked too long, overwritten, unreachable; :func:`search.storage.is_storage_fault`) is not caught:
it stops the worker with a one-line :class:`~search.errors.StorageError`, and the trial it hit
records no ``fail_reason``, so it does not use up the budget.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search import _lazy
from search._lazy import THREADS_ENV
from search.errors import ConfigError, StorageError, TinyfrontError
from search.storage import (
    counts_toward_budget,
    fail_stale,
    is_storage_fault,
    storage_backend,
    storage_fault,
    trial_slots,
)
from search.study import StudyConfig, create_or_load_study, make_objective, make_sampler

if TYPE_CHECKING:
    import optuna

    from search.data import Dataset

POLL_SECONDS = 2.0
#: How often a worker whose last trial slots are all held by other workers looks again: the search
#: ends when it sees them finished, so a longer wait would add to every search's wall time.
LAST_SLOTS_POLL_SECONDS = 0.5

log = logging.getLogger(__name__)


class _CandidateFault(type):
    """``isinstance(exc, CandidateFault)``: any Exception except a storage fault (Optuna's ``catch``)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Exception) and not is_storage_fault(obj)


class CandidateFault(Exception, metaclass=_CandidateFault):
    """What ``study.optimize(catch=...)`` catches: a failing candidate, never a failing database."""


class _OneLineFailures(logging.Filter):
    """Optuna's "Trial N failed ..." warning on one line: the traceback goes to our DEBUG log;
    a trial interrupted by Ctrl-C is not reported at all (the CLI says ``interrupted``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if not message.startswith("Trial ") or " failed " not in message:
            return True
        if message.endswith("failed with value None."):
            return False  # Optuna's second line about the same failure
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt) or (exc is not None and is_storage_fault(exc)):
            return False
        if record.exc_info:
            log.debug("%s", message, exc_info=record.exc_info)
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLineFailures()


def quiet_failures() -> None:
    """Install the one-line filter on Optuna's optimisation logger (idempotent)."""
    logger = logging.getLogger("optuna.study._optimize")
    if _ONE_LINE not in logger.filters:
        logger.addFilter(_ONE_LINE)


@dataclass(frozen=True)
class SearchProgress:
    """Where a study stands: trials that used the budget, feasible ones, best feasible accuracy."""

    done: int
    total: int
    feasible: int
    running: int
    best_accuracy: float | None


def study_progress(study: optuna.Study, n_trials: int) -> SearchProgress:
    """Read the study's trials and summarise them."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(counts_toward_budget(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())]
    accs = [t.user_attrs["result"]["figures"]["accuracy"]["value"] for t in feasible if "result" in t.user_attrs]
    return SearchProgress(done, n_trials, len(feasible), running, max(accs) if accs else None)


def optimize_until(
    study: optuna.Study,
    objective: Callable[[optuna.trial.Trial], tuple[float, ...]],
    n_trials: int,
    *,
    wait_seconds: float = LAST_SLOTS_POLL_SECONDS,
    progress: Callable[[SearchProgress], None] | None = None,
) -> None:
    """Run trials until the study holds ``n_trials`` trials that count toward the budget.

    The objects alive before the first trial, and those a trial leaves alive, are left out of the
    garbage collection after each trial (:func:`frozen_heap`).

    A storage fault raises :class:`~search.errors.StorageError` (see the module docstring).
    """
    quiet_failures()
    try:
        with frozen_heap() as heap:
            _optimize_until(study, objective, n_trials, wait_seconds, progress, heap.after_trial)
    except StorageError:
        raise
    except Exception as exc:
        if is_storage_fault(exc):
            raise storage_fault(exc, str(getattr(storage_backend(study), "url", "the storage"))) from exc
        raise


def _optimize_until(
    study: optuna.Study,
    objective: Callable[[optuna.trial.Trial], tuple[float, ...]],
    n_trials: int,
    wait_seconds: float,
    progress: Callable[[SearchProgress], None] | None,
    after_trial: Callable[[], None],
) -> None:
    from optuna.trial import TrialState

    with trial_slots(study) as slots:
        while True:
            # Held from the count until the trial exists (the objective releases it first): two
            # workers looking at the last free slot at once would otherwise both take it.
            slots.acquire()
            try:
                fail_stale(study)
                trials = study.get_trials(deepcopy=False)
                done = sum(counts_toward_budget(t) for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if done >= n_trials:
                    return
                if done + running >= n_trials:
                    # Other workers (or a dead one, until its heartbeat grace period ends) hold the last slots.
                    slots.release()
                    time.sleep(wait_seconds)
                    continue
                study.optimize(slots.releasing(objective), n_trials=1, catch=(CandidateFault,), gc_after_trial=True)
            finally:
                slots.release()
            after_trial()
            if progress is not None:
                progress(study_progress(study, n_trials))


def _worker_seed(config: StudyConfig, study: optuna.Study, index: int) -> int:
    """The sampler seed of worker ``index``, wrapped into the 32-bit range the samplers accept."""
    return (config.seed + 1000 * index + len(study.get_trials(deepcopy=False))) % 2**32


def run_worker(
    config: StudyConfig,
    n_trials: int,
    *,
    index: int = 0,
    dataset: Dataset | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    stage: Callable[[str], None] | None = None,
    record_budget: bool = False,
) -> optuna.Study:
    """Join (or create) ``config``'s study in this process and run trials until it has ``n_trials``.

    ``record_budget`` stores ``n_trials`` on the study (``tinyfront worker`` reads it as its default).
    """
    import optuna

    from search.data import load_dataset

    if n_trials < 1:
        raise ConfigError(f"trials must be >= 1, got {n_trials}")
    if dataset is None:
        dataset = load_dataset(config.data, seed=config.data_seed)
    try:
        study = create_or_load_study(config, dataset)
    except Exception as exc:
        if is_storage_fault(exc):
            raise storage_fault(exc, config.storage) from exc
        raise
    if record_budget:
        study.set_user_attr("n_trials", n_trials)
    if progress is not None:
        progress(study_progress(study, n_trials))
    loaded = optuna.load_study(
        study_name=config.study_name,
        storage=study._storage,
        sampler=make_sampler(config.sampler, _worker_seed(config, study, index)),
    )
    _lazy.tfmot()  # every trial trains: imported before the trials, its modules are left out of collections
    skip_exit_collection()
    optimize_until(loaded, make_objective(config, dataset, stage), n_trials, progress=progress)
    return loaded


#: Trials between two collections of a worker's whole heap (:class:`FrozenHeap`).
FULL_COLLECTION_EVERY = 20


class FrozenHeap:
    """What :func:`frozen_heap` yields: :meth:`after_trial` is called after each trial's collection."""

    def __init__(self, owned: bool) -> None:
        self.owned = owned  # False: something else froze objects; nothing is frozen or put back here
        self.trials = 0

    def after_trial(self) -> None:
        """Leave what survived the trial's collection out of later ones; every
        :data:`FULL_COLLECTION_EVERY` trials, collect the whole heap first."""
        if not self.owned:
            return
        self.trials += 1
        if self.trials % FULL_COLLECTION_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()


@contextmanager
def frozen_heap() -> Iterator[FrozenHeap]:
    """Leave the objects alive before the trials (with TensorFlow, Keras, tfmot and Optuna imported:
    some 400,000) and those each trial leaves alive out of the garbage collection after every trial,
    and put them all back after the trials.

    Optuna collects garbage after each trial (a trial's Keras models hold reference cycles); with
    TensorFlow loaded that full collection walks every object of the process: about 240 ms each time
    on this machine, about 11 ms with these objects left out (``benchmarks/gc_pause.py``). What the
    trials keep (base models, pruning sessions and their traced steps: some 145,000 objects in a
    digits search of the default space) was walked again after every trial too, 0.11-0.17 s each time
    once all four widths were built; so each trial's survivors are frozen after its collection
    (:meth:`FrozenHeap.after_trial`): a 120-trial digits search took 106-107 s instead of 125-127 s.
    A kept object that becomes cyclic garbage later (a cache entry evicted) is freed by the
    collection of the whole heap every :data:`FULL_COLLECTION_EVERY` trials. Objects made during a
    trial and dropped by its end are collected after it, as before. Nothing is frozen when
    something else in this process already froze objects.
    """
    if gc.get_freeze_count():
        yield FrozenHeap(owned=False)
        return
    gc.collect()
    gc.freeze()
    try:
        yield FrozenHeap(owned=True)
    finally:
        gc.unfreeze()


_exit_collection_skipped = False


def skip_exit_collection() -> None:
    """Leave every object alive at this process's exit out of the interpreter's last garbage collection.

    A process that has trained and converted with TensorFlow spent 0.73-0.90 s of its exit in that
    collection, walking objects the operating system frees anyway; 0.11-0.12 s with them frozen (a worker's
    exit is on a search's critical path: ``benchmarks/search_throughput.py`` counts it). Registered
    with :mod:`atexit` once per process; other exit handlers still run. Objects are still freed by
    their reference counts as modules are torn down; only unreachable reference cycles are left
    unfinalized, and tinyfront closes its files and commits each trial before it ends.
    """
    global _exit_collection_skipped
    if not _exit_collection_skipped:
        _exit_collection_skipped = True
        atexit.register(gc.freeze)


def worker_threads(workers: int) -> int:
    """TensorFlow threads per worker when ``workers`` share this machine: its cores / workers, at least 1."""
    return max(1, (os.cpu_count() or 1) // workers)


def _worker_process(  # pragma: no cover
    config: StudyConfig, n_trials: int, index: int, threads: int, ready: Any
) -> None:
    import optuna

    from search import _lazy

    os.environ.setdefault(THREADS_ENV, str(threads))  # before TensorFlow is imported in this child

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        _lazy.tfmot()  # TensorFlow, Keras and tfmot load while the parent prepares the study
        parent = os.getppid()
        while not ready.wait(POLL_SECONDS):
            if os.getppid() != parent:  # the parent died before the study was ready: nothing to join
                sys.exit(1)
        run_worker(config, n_trials, index=index)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        sys.exit(130)
    except TinyfrontError as exc:  # one line, not multiprocessing's traceback
        print(f"tinyfront: error: worker {index}: {exc}", file=sys.stderr)
        sys.exit(1)


def run_search(
    config: StudyConfig,
    n_trials: int,
    workers: int = 1,
    *,
    dataset: Dataset | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> optuna.Study:
    """Run ``config``'s study until it holds ``n_trials`` finished trials; resumes an existing study.

    ``workers=1`` runs in this process. ``workers=N`` starts N processes (``spawn``) first: they
    import TensorFlow while this process loads the dataset and creates (or checks) the study, then
    each loads the study by name from the storage; this process only watches the storage and
    reports progress. If the study cannot be created (a bad dataset, another search under that
    name) the workers are stopped before they run anything.
    Each worker's TensorFlow thread pools are capped at cores / N (:func:`worker_threads`; an explicit
    ``TINYFRONT_THREADS`` in the environment wins).
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return run_worker(config, n_trials, dataset=dataset, progress=progress, stage=stage, record_budget=True)
    from search.data import load_dataset

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(config, n_trials, i, worker_threads(workers), ready),
            name=f"tinyfront-worker-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()  # each imports TensorFlow while this process loads the data and creates the study
    try:
        if dataset is None:
            dataset = load_dataset(config.data, seed=config.data_seed)
        study = create_or_load_study(config, dataset)  # create once here, so workers only load it
        study.set_user_attr("n_trials", n_trials)
        ready.set()
        while any(p.is_alive() for p in procs):
            if progress is not None:
                progress(study_progress(study, n_trials))
            for p in procs:
                p.join(timeout=POLL_SECONDS / len(procs))
    finally:
        for p in procs:
            if p.is_alive():  # interrupted: stop our own workers; their trials fail by heartbeat
                p.terminate()
                p.join()
    if progress is not None:
        progress(study_progress(study, n_trials))
    failed = [p for p in procs if p.exitcode != 0]
    if failed:
        codes = ", ".join(f"{p.name} exit {p.exitcode}" for p in failed)
        raise TinyfrontError(f"{len(failed)} of {workers} worker processes failed ({codes}); see their messages above")
    return study
