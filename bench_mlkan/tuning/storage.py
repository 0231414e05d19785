"""Optuna storages: one SQLite file for all studies by default, journal files, any SQLAlchemy URL.

``resolve_storage(value, studies_dir)`` turns ``--storage`` into a URL (or a journal file
path); ``make_storage`` opens it with heartbeats and Optuna's retry of dead workers' trials.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from ..config import ConfigError

try:  # optuna >= 4.9 renamed the retry callback and its RDBStorage argument
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback

    RETRY_ARG = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover - older optuna
    from optuna.storages import RetryFailedTrialCallback as RetryCallback

    RETRY_ARG = "failed_trial_callback"

#: the one SQLite file / journal file of ``<out>/studies`` that holds every study
SQLITE_NAME, JOURNAL_NAME = "optuna.db", "journal.log"
SQLITE_SUFFIXES, JOURNAL_SUFFIXES = (".db", ".sqlite", ".sqlite3"), (".log", ".jsonl")
MAX_RETRY = 3
ACCEPTED = (
    "nothing or 'sqlite' (<out>/studies/optuna.db, all studies in one file), a SQLite file "
    f"path ({', '.join('*' + s for s in SQLITE_SUFFIXES)}), 'journal' (<out>/studies/"
    f"journal.log) or a journal file path ({', '.join('*' + s for s in JOURNAL_SUFFIXES)}), "
    "or an SQLAlchemy URL (sqlite:///path.db, postgresql+psycopg2://user@host/db, "
    "mysql+pymysql://...)"
)


def resolve_storage(value: str | None, studies_dir: Path) -> str:
    """``--storage`` -> an RDB URL or a journal file path (absolute); ``ConfigError``
    listing the accepted forms for anything else (e.g. a misspelled 'journel')."""
    if value is None or value == "sqlite":
        return f"sqlite:///{(Path(studies_dir) / SQLITE_NAME).resolve()}"
    if value == "journal":
        return str((Path(studies_dir) / JOURNAL_NAME).resolve())
    if "://" in value:
        _check_url(value)
        return value
    path = Path(value).expanduser()
    if path.suffix in SQLITE_SUFFIXES:
        return f"sqlite:///{path.resolve()}"
    if path.suffix in JOURNAL_SUFFIXES:
        return str(path.resolve())
    raise ConfigError(f"--storage {value!r}: not a storage; accepted: {ACCEPTED}")


def _check_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise ConfigError(
            f"--storage {redact(url)!r}: not a usable SQLAlchemy URL ({e}); accepted: {ACCEPTED}"
        ) from None


def is_journal(url: str) -> bool:
    """A journal file path (no ``scheme://``)."""
    return "://" not in url


def make_storage(url: str, heartbeat: int = 10, grace: int = 60) -> BaseStorage:
    """Optuna storage for ``url`` with heartbeats and retry of trials of dead workers.

    RDB URLs (``sqlite:///...``, ``postgresql+psycopg2://...``): Optuna's heartbeat
    (``heartbeat_interval``, ``grace_period``) with its retry callback for stale trials. A
    file path: a ``JournalStorage`` on a ``JournalFileBackend`` (heartbeats as trial system
    attributes, see ``queue.Heartbeat``).
    """
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        storage: BaseStorage = JournalStorage(JournalFileBackend(url))
        storage._bench_mlkan_heartbeat = (heartbeat, grace)  # type: ignore[attr-defined]
        return storage
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}
        database = url.partition(":///")[2].partition("?")[0]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    import sqlalchemy.exc

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry: dict[str, Any] = {RETRY_ARG: RetryCallback(max_retry=MAX_RETRY)}
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    **retry,
                )
        except sqlalchemy.exc.SQLAlchemyError:
            # commands started together on a fresh database race to create Optuna's tables;
            # the loser finds them made on the next try
            if attempt == 5:
                raise
            time.sleep(0.5 + random.random() * 2**attempt)
    raise AssertionError("unreachable")


def redact(url: str) -> str:
    """The URL without its password (for files that may be committed)."""
    if is_journal(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


def heartbeat_settings(storage: BaseStorage) -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds of ``storage``."""
    if isinstance(storage, RDBStorage):
        interval = storage.heartbeat_interval or 10
        return interval, storage.grace_period or 2 * interval
    return getattr(storage, "_bench_mlkan_heartbeat", (10, 60))


def retry(study: optuna.Study, storage: BaseStorage, trial_id: int) -> None:
    """Re-queue a failed trial with its parameters (Optuna's retry callback, MAX_RETRY)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryCallback(max_retry=MAX_RETRY)(study, storage.get_trial(trial_id))


def dashboard_command(url: str) -> str:
    """The command that opens ``url`` in optuna-dashboard."""
    return f"optuna-dashboard {url}"
