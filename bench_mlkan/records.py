"""Run records: one JSON file per run, the single source of truth for every leaderboard.

Layout (``<row>`` is the baseline's name, or ``<baseline>@<variant>`` for a profile
experiment that names a ``"variant"``: same baseline, different overrides)::

    <results>/<profile>/<task>/<row>/seed<k>.json         the record (strict JSON)
    <results>/<profile>/<task>/<row>/seed<k>.pt           weights at the end of every level
                                                          {"levels": {level: state_dict}}
    <results>/<profile>/<task>/<row>/seed<k>.failed.json  a failed rerun, kept beside an ok
                                                          record (which it never replaces)
    <results>/<profile>/.lock                             held by the bench writing there

``<results>`` is ``runs/results`` for ``make bench`` (git-ignored) and
``leaderboards/results`` for the shipped records. ``record_path(results / profile, task,
row, seed)`` builds a path; ``profile_dir`` and ``row_name`` the parts.

Identity: a record is (profile, task, row, seed, config_hash). The bench skips a run whose
``ok`` or ``diverged`` record has the same hash, retries ``failed`` ones, and never
replaces an ``ok`` record by one of a different config unless forced (``bench.py``).

Writing (``write_record``): the ``.pt`` first (temporary name, fsync, rename), its sha256
into the record's ``weights_sha256``, then the JSON (temporary name, rename). A reader
(``read_record``) raises ``RecordError`` for a record whose ``.pt`` is missing or does not
match ``weights_sha256`` (an interrupted write: incomplete), and for unreadable JSON.

Non-finite floats: records are strict JSON (``allow_nan=False``). Every NaN/inf float is
stored as ``null`` and listed in the top-level map ``"nonfinite"``: dotted path ->
``"nan" | "inf" | "-inf"`` (path segments are dict keys or list indices), e.g.
``{"diverged.loss": "nan", "history.17.loss": "inf"}``. ``read_record`` puts the floats
back, so readers see ``float("nan")`` where the run produced one. (Records of schema 1 may
hold the non-standard tokens NaN/Infinity; Python's JSON reader still accepts them.)

Record fields::

    schema            RECORD_SCHEMA (int)
    task, baseline, variant (null or name), seed, profile
    config            the full RunConfig (dict); config_hash = sha256 of it (canonical JSON)
    task_description  task.describe()
    status            "ok" | "diverged" | "failed";  error (traceback or null); diverged
                      ({step, level, loss} or null)
    final_metrics     {rel_l2, max_abs, mse, train_loss, ...} (no split prefix; empty unless ok)
    params, params_per_level {level: count}
    steps, work, work_unit, work_macs, wall_clock (s)
    evaluations       loss-and-gradient evaluations; idle_steps: steps that changed no
                      parameter; work_evaluations: work in coarse evaluations (METHOD.md 6)
    level_stats       {level: {steps, evaluations, idle_steps, wall_clock}}
    diagnostics       {outside_grid: [fraction per spline layer], output_spread, collapsed}
    history           per optimizer step {step, level, work, work_macs, work_evaluations,
                      loss, lr, loss/<term>, evaluations, idle}; thinned to <= HISTORY_POINTS
                      rows (always keeping the first and last step of every level)
    eval_history      metrics and diagnostics at each level end (and every eval_every steps)
    refinements       {level, step, work, work_macs, loss_before, loss_after, rel_change,
                      level_end_metrics}
    device, environment (versions, machine, threads), git_commit, started, finished
    weights_sha256    sha256 of seed<k>.pt, or null when no weights were saved
    nonfinite         {dotted path: "nan" | "inf" | "-inf"} (absent when empty)

Readers use the typed ``Record`` (``Record.load(path)``); it fills the work fields that
older records lack (evaluations, idle steps, work in evaluations, steps per level) from a
complete history and names them in ``Record.derived``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import torch

RECORD_SCHEMA = 2
HISTORY_POINTS = 2000
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the shipped records and tables (rendered per profile into leaderboards/<profile>/)
SHIPPED_RESULTS = REPO_ROOT / "leaderboards" / "results"
SHIPPED_LEADERBOARDS = REPO_ROOT / "leaderboards"
#: where ``make bench`` writes by default (git-ignored)
DEFAULT_RESULTS = REPO_ROOT / "runs" / "results"
DEFAULT_LEADERBOARDS = REPO_ROOT / "runs" / "leaderboards"
#: a record file name: seed<k>.json (not seed<k>.failed.json)
RECORD_NAME = re.compile(r"^seed(-?\d+)\.json$")
REQUIRED_FIELDS = ("task", "baseline", "seed", "status")


class RecordError(ValueError):
    """A record that cannot be used: unreadable JSON, missing fields, or missing weights."""


class LockHeld(RuntimeError):
    """Another process holds a results folder's lock; ``pid`` is its process id (or None)."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{path} is locked by {who} (another bench writes there)")


# ----------------------------------------------------------------------------- paths
def row_name(baseline: str, variant: str | None = None) -> str:
    """The leaderboard row (and record folder) of a baseline: ``b`` or ``b@variant``."""
    return f"{baseline}@{variant}" if variant else baseline


def profile_dir(results: Path, profile: str) -> Path:
    """The records folder of one profile: ``<results>/<profile>``."""
    return Path(results) / profile


def record_path(folder: Path, task: str, row: str, seed: int) -> Path:
    """``<folder>/<task>/<row>/seed<k>.json``; ``folder`` is one profile's records folder."""
    return Path(folder) / task / row / f"seed{seed}.json"


def weights_path(path: Path) -> Path:
    """The ``.pt`` beside a record."""
    return Path(path).with_suffix(".pt")


def failed_path(path: Path) -> Path:
    """Where a failed rerun goes when an ok record exists: ``seed<k>.failed.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".failed.json")


def record_files(folder: Path) -> list[Path]:
    """Every ``<task>/<row>/seed<k>.json`` under one profile's folder (sorted)."""
    return sorted(p for p in Path(folder).glob("*/*/seed*.json") if RECORD_NAME.match(p.name))


# ----------------------------------------------------------------------------- identity
def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (the run's identity for resuming)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    """The repository's HEAD commit (None outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def thin_history(
    history: list[dict[str, Any]], points: int = HISTORY_POINTS
) -> list[dict[str, Any]]:
    """At most ~``points`` rows: a uniform stride plus each level's first and last step."""
    if len(history) <= points:
        return history
    stride = -(-len(history) // points)
    keep = set(range(0, len(history), stride)) | {len(history) - 1}
    for i in range(1, len(history)):
        if history[i]["level"] != history[i - 1]["level"]:
            keep |= {i - 1, i}
    return [history[i] for i in sorted(keep)]


# ----------------------------------------------------------------------------- strict JSON
def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def _nonfinite_name(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def encode_nonfinite(data: Any) -> tuple[Any, dict[str, str]]:
    """``data`` with every non-finite float replaced by None, and {dotted path: "nan"|...}.

    Example: ``encode_nonfinite({"a": [1.0, float("inf")]})`` ->
    ``({"a": [1.0, None]}, {"a.1": "inf"})``.
    """
    found: dict[str, str] = {}

    def walk(node: Any, path: tuple[str, ...]) -> Any:
        if isinstance(node, float) and not math.isfinite(node):
            found[".".join(path)] = _nonfinite_name(node)
            return None
        if isinstance(node, dict):
            return {k: walk(v, (*path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, str(i))) for i, v in enumerate(node)]
        return node

    return walk(data, ()), found


def decode_nonfinite(data: dict[str, Any], nonfinite: dict[str, str]) -> None:
    """Put the floats of ``nonfinite`` ({dotted path: "nan"|"inf"|"-inf"}) back, in place.

    A dict key may itself contain dots: segments are joined until a key matches.
    """
    for dotted, name in nonfinite.items():
        parts = dotted.split(".")
        node: Any = data
        i = 0
        while True:
            if isinstance(node, list):
                key: Any = int(parts[i])
                j = i + 1
            else:
                j = i + 1
                while ".".join(parts[i:j]) not in node and j < len(parts):
                    j += 1
                key = ".".join(parts[i:j])
                if key not in node:
                    raise RecordError(f"nonfinite path {dotted!r} not in the record")
            if j == len(parts):
                node[key] = float(name)
                break
            node, i = node[key], j


def dumps_strict(data: Any) -> str:
    """Strict JSON text of a record: non-finite floats moved to ``"nonfinite"`` (see above)."""
    plain = json.loads(json.dumps(data, default=_json_default, allow_nan=True))
    clean, found = encode_nonfinite(plain)
    if isinstance(clean, dict):
        clean.pop("nonfinite", None)
        if found:
            clean["nonfinite"] = found
    elif found:
        raise ValueError("non-finite floats outside a record dict")
    return json.dumps(clean, indent=1, allow_nan=False) + "\n"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write strict JSON (``dumps_strict``) through a temporary file renamed into place."""
    _atomic_write(Path(path), lambda f: f.write(dumps_strict(data).encode()))


def _atomic_write(path: Path, fill: Callable[[IO[bytes]], Any]) -> str:
    """Write bytes via ``fill(file)`` to a temp file, fsync, rename to ``path``; sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
        return digest
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_torch(path: Path, obj: Any) -> str:
    """``torch.save`` through a temporary file renamed into place; returns its sha256."""
    return _atomic_write(Path(path), lambda f: torch.save(obj, f))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- records
def make_record(
    result,
    *,
    task: str,
    baseline: str,
    seed: int,
    profile: str | None,
    task_description: dict[str, Any],
    started: str,
    variant: str | None = None,
) -> dict[str, Any]:
    """The record of a finished ``RunResult``."""
    body = result.to_dict()
    body["history"] = thin_history(body["history"])
    head = _identity(task, baseline, variant, seed, profile, body["config"])
    return {**head, "task_description": task_description, **body, **_provenance(started)}


def failed_record(
    config: dict[str, Any],
    error: str,
    *,
    task: str,
    baseline: str,
    seed: int,
    profile: str | None,
    started: str,
    variant: str | None = None,
) -> dict[str, Any]:
    """The record of a run that raised (or whose worker died) before producing a result."""
    return {
        **_identity(task, baseline, variant, seed, profile, config),
        "config": config,
        "status": "failed",
        "error": error,
        "final_metrics": {},
        "history": [],
        "eval_history": [],
        "refinements": [],
        "diverged": None,
        "params": 0,
        "params_per_level": {},
        "steps": 0,
        "work": 0.0,
        "work_unit": "",
        "work_macs": 0.0,
        "wall_clock": 0.0,
        **_provenance(started),
    }


def _identity(
    task: str,
    baseline: str,
    variant: str | None,
    seed: int,
    profile: str | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    return {"schema": RECORD_SCHEMA, "task": task, "baseline": baseline, "variant": variant,
            "seed": seed, "profile": profile, "config_hash": config_hash(config)}  # fmt: skip


def _provenance(started: str) -> dict[str, Any]:
    return {"git_commit": git_commit(), "started": started, "finished": now()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_row(record: dict[str, Any]) -> str:
    """The row name of a record (``baseline`` or ``baseline@variant``)."""
    return row_name(str(record.get("baseline")), record.get("variant"))


# ----------------------------------------------------------------------------- read / write
def read_record(path: Path, verify_weights: bool = True) -> dict[str, Any]:
    """A record with its non-finite floats restored.

    Raises ``RecordError`` naming the file when the JSON is unreadable or lacks the identity
    fields, or (``verify_weights``) when ``weights_sha256`` is set and the ``.pt`` beside it
    is missing or differs (a write that did not finish).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: unreadable record ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED_FIELDS):
        raise RecordError(f"{path}: not a run record (needs fields {', '.join(REQUIRED_FIELDS)})")
    nonfinite = data.get("nonfinite")
    if nonfinite:
        decode_nonfinite(data, nonfinite)
    digest = data.get("weights_sha256")
    if verify_weights and digest:
        pt = weights_path(path)
        if not pt.exists():
            raise RecordError(f"{path}: incomplete record (its weights {pt.name} are missing)")
        if sha256_file(pt) != digest:
            raise RecordError(f"{path}: incomplete record ({pt.name} does not match its sha256)")
    return data


def existing_status(path: Path) -> str | None:
    """The status of the complete record at ``path``; None when absent or unusable."""
    try:
        return str(read_record(path)["status"]) if Path(path).exists() else None
    except RecordError:
        return None


def write_record(path: Path, record: dict[str, Any], weights: Any = None) -> Path:
    """Write ``record`` (and ``weights``, saved first) as one unit; return the JSON's path.

    A ``failed`` record never replaces an ``ok`` one: it goes to ``seed<k>.failed.json``
    (without weights). A record without weights removes a stale ``.pt``; a finished (ok or
    diverged) record removes a stale ``.failed.json``.
    """
    path = Path(path)
    if record.get("status") == "failed" and existing_status(path) == "ok":
        target = failed_path(path)
        atomic_write_json(target, {**record, "weights_sha256": None})
        return target
    digest = atomic_save_torch(weights_path(path), weights) if weights is not None else None
    atomic_write_json(path, {**record, "weights_sha256": digest})
    if digest is None and weights_path(path).exists():
        weights_path(path).unlink()
    if record.get("status") != "failed" and failed_path(path).exists():
        failed_path(path).unlink()
    return path


# ----------------------------------------------------------------------------- typed view
@dataclass(frozen=True)
class LevelStats:
    """One level of a run: optimizer steps, loss-and-gradient evaluations, idle steps (steps
    that changed no parameter) and seconds (None when the record does not say)."""

    steps: int
    evaluations: int | None
    idle_steps: int | None
    wall_clock: float | None


@dataclass(frozen=True)
class Record:
    """A run record as the leaderboards read it (``Record.load(path)``).

    The fields are the record's (see the module docstring); ``path`` is the JSON file and
    ``derived`` names the fields this reader filled in from the history because the record
    predates them (``evaluations``, ``idle_steps``, ``work_evaluations``, ``level_stats``).
    Work fields the record neither holds nor allows deriving are None.
    """

    task: str
    baseline: str
    seed: int
    status: str
    variant: str | None = None
    profile: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    task_description: Mapping[str, Any] = field(default_factory=dict)
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    eval_history: tuple[Mapping[str, Any], ...] = ()
    refinements: tuple[Mapping[str, Any], ...] = ()
    diverged: Mapping[str, Any] | None = None
    error: str | None = None
    params: int = 0
    params_per_level: Mapping[int, int] = field(default_factory=dict)
    steps: int = 0
    work: float = 0.0
    work_unit: str = ""
    work_macs: float = 0.0
    work_evaluations: float | None = None
    evaluations: int | None = None
    idle_steps: int | None = None
    level_stats: Mapping[int, LevelStats] = field(default_factory=dict)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    wall_clock: float = 0.0
    device: str = ""
    path: Path | None = None
    derived: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: Path | str, verify_weights: bool = True) -> Record:
        """Read ``path`` (``read_record``: raises ``RecordError``) into a ``Record``."""
        return cls.from_dict(read_record(Path(path), verify_weights), Path(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> Record:
        """A ``Record`` of a record's JSON body (missing optional fields get defaults)."""
        history = [dict(h) for h in data.get("history") or []]
        derived: set[str] = set()
        work = _history_work(data, history)
        stats = {
            int(k): LevelStats(
                int(v.get("steps", 0)),
                _int_or_none(v.get("evaluations")),
                _int_or_none(v.get("idle_steps")),
                None if v.get("wall_clock") is None else float(v["wall_clock"]),
            )
            for k, v in (data.get("level_stats") or {}).items()
        }
        if not stats and work["level_stats"]:
            stats, derived = work["level_stats"], derived | {"level_stats"}
        fields = {}
        for key in ("evaluations", "idle_steps", "work_evaluations"):
            if data.get(key) is not None:
                fields[key] = data[key]
            elif work[key] is not None:
                fields[key] = work[key]
                derived.add(key)
        diverged = data.get("diverged")
        return cls(
            task=str(data["task"]),
            baseline=str(data["baseline"]),
            seed=int(data["seed"]),
            status=str(data["status"]),
            variant=data.get("variant"),
            profile=data.get("profile"),
            config=dict(data.get("config") or {}),
            task_description=dict(data.get("task_description") or {}),
            final_metrics={
                str(k): float(v)
                for k, v in (data.get("final_metrics") or {}).items()
                if isinstance(v, int | float)
            },  # fmt: skip
            history=tuple(history),
            eval_history=tuple(dict(e) for e in data.get("eval_history") or []),
            refinements=tuple(dict(r) for r in data.get("refinements") or []),
            diverged=dict(diverged) if isinstance(diverged, Mapping) else None,
            error=data.get("error"),
            params=int(data.get("params") or 0),
            params_per_level={
                int(k): int(v) for k, v in (data.get("params_per_level") or {}).items()
            },  # fmt: skip
            steps=int(data.get("steps") or 0),
            work=float(data.get("work") or 0.0),
            work_unit=str(data.get("work_unit") or ""),
            work_macs=float(data.get("work_macs") or 0.0),
            work_evaluations=_float_or_none(fields.get("work_evaluations")),
            evaluations=_int_or_none(fields.get("evaluations")),
            idle_steps=_int_or_none(fields.get("idle_steps")),
            level_stats=stats,
            diagnostics=dict(data.get("diagnostics") or {}),
            wall_clock=float(data.get("wall_clock") or 0.0),
            device=str(data.get("device") or ""),
            path=Path(path) if path is not None else None,
            derived=frozenset(derived),
        )

    @property
    def row(self) -> str:
        """``baseline`` or ``baseline@variant``."""
        return row_name(self.baseline, self.variant)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def weights_path(self) -> Path | None:
        """The ``.pt`` beside the record (None for a record not read from a file)."""
        return weights_path(self.path) if self.path is not None else None

    def final(self, key: str) -> float | None:
        """``final_metrics[key]`` of a finished run; None when absent or not ok."""
        return self.final_metrics.get(key) if self.ok else None


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _history_work(data: Mapping[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluations, idle steps, work in coarse evaluations and per-level counts from a
    *complete* history (one row per step, each with its ``evaluations``); adds the running
    ``work_evaluations`` to the rows in place. None where the history does not allow it.

    Idle steps come from the rows' ``idle`` flags; without them, for L-BFGS with
    ``max_iter`` > 1, from steps with a single evaluation (such a step returns before
    moving: its first gradient was below ``tolerance_grad``); other optimizers write the
    parameters at every step (never idle).
    """
    none: dict[str, Any] = {"evaluations": None, "idle_steps": None,
                            "work_evaluations": None, "level_stats": {}}  # fmt: skip
    steps = int(data.get("steps") or 0)
    if not history or len(history) != steps or any("evaluations" not in h for h in history):
        return none
    config = data.get("config") or {}
    idle: list[bool]
    if all("idle" in h for h in history):
        idle = [bool(h["idle"]) for h in history]
    elif config.get("optimizer") == "lbfgs" and (
        int((config.get("optimizer_options") or {}).get("max_iter", 20)) > 1
    ):
        idle = [int(h["evaluations"]) == 1 for h in history]
    else:  # every other optimizer writes the parameters at every step
        idle = [False] * len(history)
    out = dict(none)
    out["evaluations"] = sum(int(h["evaluations"]) for h in history)
    out["idle_steps"] = sum(idle)
    if config.get("cost_model", "paper") == "paper":  # a step's work is its paper cost
        total, previous = 0.0, 0.0
        for h in history:
            total += int(h["evaluations"]) * (float(h["work"]) - previous)
            previous = float(h["work"])
            h.setdefault("work_evaluations", total)
        out["work_evaluations"] = total
    levels: dict[int, list[int]] = {}
    for i, h in enumerate(history):
        levels.setdefault(int(h["level"]), []).append(i)
    out["level_stats"] = {
        level: LevelStats(
            len(rows),
            sum(int(history[i]["evaluations"]) for i in rows),
            sum(idle[i] for i in rows),
            None,
        )
        for level, rows in sorted(levels.items())
    }
    return out


def iter_records(folder: Path) -> Iterator[dict[str, Any]]:
    """Every readable record of one profile's folder (sorted by path)."""
    for path in record_files(folder):
        yield read_record(path)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete ``.*.tmp`` files left by interrupted writes (call while holding the lock)."""
    n = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            n += 1
    return n


# ----------------------------------------------------------------------------- lock
@contextlib.contextmanager
def results_lock(
    folder: Path, wait: bool = False, on_wait: Callable[[int | None], None] | None = None
) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<folder>/.lock`` (the holder's pid is written in it).

    Raises ``LockHeld`` at once when another process holds it, unless ``wait`` (then
    ``on_wait(pid)`` is called once and this blocks until the lock is free).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = lock_holder(path)
            if not wait:
                raise LockHeld(path, pid) from None
            if on_wait is not None:
                on_wait(pid)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lock_holder(path: Path) -> int | None:
    """The pid written in a lock file (None when unreadable)."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
