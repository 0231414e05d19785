"""The distributed trial queue: queued trials, heartbeats, re-queue of dead workers' trials.

``--trials N`` is the study's target number of trials. The command that creates the study
queues N trials (``enqueue_trial``); a later command with a larger N tops the queue up (do
that from one machine at a time). Workers pop queued trials only, so two workers can never
run the same trial and a study never ends with more or fewer than N counted trials. Each
running trial sends a heartbeat (RDB storages: Optuna's ``heartbeat_interval`` /
``grace_period``; journal files: a timestamp in the trial's system attrs); a trial whose
worker died (no heartbeat for ``--grace`` seconds) is failed and re-queued by Optuna's retry
callback (at most ``MAX_RETRY`` times), and a worker stopped by Ctrl-C / SIGTERM re-queues
its trial at once. Workers wait while other workers' trials run, so they can pick up
retries; the study is done when nothing is queued or running.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import Trial, TrialState

from ..config import ConfigError
from . import objective as objective_module
from .space import StudySpec
from .storage import heartbeat_settings, retry

META_KEY = "bench_mlkan"  # study user attr: what the study tunes (set once queued)
HEARTBEAT_KEY = "bench_mlkan:heartbeat"  # trial system attr (journal storages)


class Heartbeat:
    """A thread that marks ``trial_id`` alive every ``interval`` seconds while it runs."""

    def __init__(self, storage: BaseStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.interval = heartbeat_settings(storage)[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def beat(self) -> None:
        if isinstance(self.storage, RDBStorage):
            self.storage.record_heartbeat(self.trial_id)
        else:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_KEY, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the trial finished meanwhile, or a DB hiccup
                pass

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating and re-queue them; their numbers."""
    if isinstance(storage, RDBStorage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(after - before)
    grace = heartbeat_settings(storage)[1]
    now, failed = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT_KEY)
        if beat is None:
            continue
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        if now - max(float(beat), started) <= grace:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                retry(study, storage, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed


def retried_numbers(study: optuna.Study) -> set[int]:
    """Numbers of failed trials that were re-queued (they do not count as failures)."""
    out: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        out.update(t.system_attrs.get("retry_history", []))
    return out


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; ``retried`` are failed trials that were re-queued (not counted)."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(study)
    counts = dict.fromkeys(("complete", "pruned", "failed", "retried", "running", "waiting"), 0)
    for t in trials:
        if t.state == TrialState.FAIL:
            counts["retried" if t.number in retried else "failed"] += 1
        elif t.state.name.lower() in counts:
            counts[t.state.name.lower()] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    counts["live"] = counts["finished"] + counts["running"] + counts["waiting"]
    return counts


def failed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """FAILED trials that were not re-queued (real failures), by number."""
    retried = retried_numbers(study)
    done = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted((t for t in done if t.number not in retried), key=lambda t: t.number)


def prepare_study(
    storage: BaseStorage,
    name: str,
    n_trials: int,
    meta: dict[str, Any],
    wait_s: float = 60.0,
    metric_name: str | None = None,
) -> optuna.Study:
    """Create or join study ``name`` and top its queue up to ``n_trials`` live trials.

    The creator sets the direction (``meta["direction"]``) and the objective's name
    (``metric_name``, shown by optuna-dashboard), queues the trials and then stores ``meta``
    (what the study tunes); a command joining an existing study waits for ``meta`` (so it
    never queues trials the creator is still queuing), refuses a study made for something
    else, and queues only the missing trials when ``n_trials`` exceeds the study's target.
    """
    direction = meta.get("direction", "minimize")
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    stored = study.user_attrs.get(META_KEY)
    deadline = time.monotonic() + wait_s
    while not created and stored is None and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get(META_KEY)
    if stored is not None:
        mismatch = {
            k: (stored.get(k), v)
            for k, v in meta.items()
            if k != "target" and _jsonable(stored.get(k)) != _jsonable(v)
        }
        if mismatch:
            raise ConfigError(
                f"study {name!r} tunes something else: {mismatch} (stored, given); "
                "choose another --study"
            )
    if metric_name and study.metric_names != [metric_name]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric_name])
    target = int((stored or {}).get("target", 0))
    if created or stored is None or n_trials > target:
        missing = n_trials - trial_counts(study)["live"]
        for _ in range(max(missing, 0)):
            study.enqueue_trial({}, skip_if_exists=False)
        study.set_user_attr(META_KEY, {**meta, "target": max(n_trials, target)})
    return study


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def pop_waiting(storage: BaseStorage, study: optuna.Study) -> int | None:
    """Claim one queued trial (atomic in the storage), or None when the queue is empty."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Stop(BaseException):
    """SIGTERM in a worker: stop like Ctrl-C (re-queue the running trial, then exit)."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop()


class sigterm_stops:
    """While active, SIGTERM raises ``Stop`` (main thread only; restored afterwards)."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_stop)

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def run_worker(
    spec: StudySpec,
    storage: BaseStorage,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    poll_s: float | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run queued trials of ``spec.study_name`` until none is queued or running; returns
    how many this worker ran. A trial interrupted by Ctrl-C/SIGTERM is re-queued before the
    exception propagates."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    study = optuna.load_study(
        study_name=spec.study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    poll = poll_s if poll_s is not None else min(5.0, heartbeat_settings(storage)[0] / 2)
    ran = 0
    while True:
        for number in fail_stale_trials(study, storage):
            log(f"[tune] trial {number}: its worker stopped beating; failed and re-queued")
        trial_id = pop_waiting(storage, study)
        if trial_id is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return ran
            time.sleep(poll)
            continue
        trial = Trial(study, trial_id)
        ran += 1
        run_trial(spec, study, storage, trial, log)


def run_trial(
    spec: StudySpec, study: optuna.Study, storage: BaseStorage, trial: Trial, log: Callable
) -> None:
    """Run one claimed trial and tell the study its state (a crash is FAILED, never raised)."""
    state, value = TrialState.COMPLETE, None
    with Heartbeat(storage, trial._trial_id):
        try:
            value = objective_module.objective(spec, trial)
        except optuna.TrialPruned as e:
            state = TrialState.PRUNED
            log(f"[tune] trial {trial.number} pruned: {e}")
        except (KeyboardInterrupt, SystemExit, Stop):
            if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                tell(study, trial, TrialState.FAIL, None)
                retry(study, storage, trial._trial_id)
                log(f"[tune] trial {trial.number} interrupted: re-queued")
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            state = TrialState.FAIL  # finished elsewhere: handled below
        except Exception as e:  # noqa: BLE001 - a failed trial never stops the study
            state = TrialState.FAIL
            try:
                if "error" not in storage.get_trial(trial._trial_id).user_attrs:
                    trial.set_user_attr("error", objective_module.tail(_format(e)))
            except Exception:  # noqa: BLE001
                pass
            log(f"[tune] trial {trial.number} failed: {e!r}")
    if storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
        log(
            f"[tune] trial {trial.number}: another worker declared it dead (heartbeat later than "
            "--grace) and re-queued it; this run's result is dropped"
        )
        return
    tell(study, trial, state, value)
    if state == TrialState.COMPLETE:
        log(f"[tune] trial {trial.number}: {spec.objective_name} = {value:.4f}  {trial.params}")


def _format(e: BaseException) -> str:
    return "".join(traceback.format_exception(e))


def tell(study: optuna.Study, trial: Trial, state: TrialState, value: float | None) -> None:
    """``study.tell`` that tolerates a trial another worker already finished."""
    try:
        if state == TrialState.COMPLETE:
            study.tell(trial, value, skip_if_finished=True)
        else:
            study.tell(trial, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """TPE; ``constant_liar`` keeps parallel workers from proposing the same point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


#: --pruner name -> factory
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    "none": optuna.pruners.NopPruner,
}


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner {name!r}; known: {sorted(PRUNERS)}")
    return PRUNERS[name]()
