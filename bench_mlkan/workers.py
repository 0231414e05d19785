"""Worker processes of the bench: spawned, one run at a time, deaths noticed at once.

``pool = WorkerPool(size, gpus, threads); pool.start(); pool.run(jobs, on_start, on_done,
on_idle)`` hands each job ``(RunSpec, record path, profile, RunOptions)`` to a free worker
(``bench.run_one`` there; a worker first imports the plugins of ``$BENCH_MLKAN_PLUGINS``)
and waits on every busy worker's pipe *and* process sentinel
(``multiprocessing.connection.wait``, 1 s timeout), so a worker that dies - a signal,
the out-of-memory killer, a segfault, ``os._exit`` - is seen within a second:
``on_done(job, None, error)`` gets an error whose last line names the cause
(``describe_exit``), and the slot's next job goes to a fresh worker. Workers ignore
SIGINT (the bench handles it), set ``PR_SET_PDEATHSIG`` to SIGKILL on Linux and watch
their parent pid, so none outlives the bench; ``kill_all`` ends them at once.
With GPUs there is one worker per visible GPU, pinned with ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

#: seconds between "still running" calls (``on_idle``) while no run finishes
HEARTBEAT_S = 60.0

SIGNAL_HINTS = {
    int(signal.SIGKILL): "kill -9 or the out-of-memory killer",
    int(signal.SIGSEGV): "segmentation fault",
    int(signal.SIGBUS): "bus error",
    int(signal.SIGABRT): "aborted",
}


def describe_exit(exitcode: int | None) -> str:
    """Why a worker process ended, in words (its exit code or the signal that killed it)."""
    if exitcode is None:
        return "worker vanished (no exit code)"
    if exitcode < 0:
        sig = -exitcode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown signal"
        hint = f" - {SIGNAL_HINTS[sig]}" if sig in SIGNAL_HINTS else ""
        return f"worker killed by signal {sig} ({name}{hint})"
    return f"worker exited with code {exitcode} before reporting a result"


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the bench process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _worker_main(conn, gpu: str | None, threads: int, parent_pid: int) -> None:
    """A worker process: import the parent's plugins, then receive (spec, path, profile,
    options), run, send the record."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench handles Ctrl-C and kills us
    _die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)
    from .plugins import load_plugins_from_env

    load_plugins_from_env()  # the parent's --plugin modules register tasks, models, baselines
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        from .bench import run_one

        spec, path, profile, options = job
        record = run_one(spec, Path(path), profile, options)
        conn.send({k: v for k, v in record.items() if k not in ("history", "eval_history")})


def threads_per_worker(workers: int) -> int:
    """Torch/OpenMP threads for each of ``workers`` processes: ``$OMP_NUM_THREADS`` when set
    (a user sharing the machine), else the CPUs this process may use divided among them."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(workers, 1))


@dataclass
class _Worker:
    process: Any
    conn: Any
    gpu: str | None
    job: tuple | None = None


class WorkerPool:
    """Spawned worker processes that run one job at a time; a dead one is replaced."""

    def __init__(self, size: int, gpus: list[str], threads: int):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.threads = threads
        self.slots: list[str | None] = list(gpus) if gpus else [None] * size
        self.workers: list[_Worker] = []

    def start(self) -> None:
        """Spawn one worker per slot (inside the caller's try, so ``kill_all`` sees them)."""
        for gpu in self.slots[len(self.workers) :]:
            self.workers.append(self._spawn(gpu))

    def _spawn(self, gpu: str | None) -> _Worker:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=_worker_main,
            args=(child, gpu, self.threads, os.getpid()),
            daemon=True,
            name=f"bench-worker-{gpu or 'cpu'}",
        )
        proc.start()
        child.close()
        return _Worker(proc, parent, gpu)

    def kill_all(self) -> int:
        """SIGKILL every live worker and reap it; the number killed."""
        n = 0
        for w in self.workers:
            if w.process.is_alive():
                w.process.kill()
                n += 1
            w.process.join(timeout=5)
            with contextlib.suppress(OSError):
                w.conn.close()
        return n

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
        for w in self.workers:
            w.process.join(timeout=5)
        self.kill_all()

    def run(
        self,
        jobs: list[tuple],
        on_start: Callable[[tuple, int], None],
        on_done: Callable[[tuple, dict[str, Any] | None, str | None], None],
        on_idle: Callable[[], None],
    ) -> None:
        """Run every job; ``on_done(job, result, None)``, or ``on_done(job, None, error)`` when
        its worker died (``error``'s last line names the cause)."""
        queue = deque(jobs)
        last_event = time.perf_counter()
        while queue or any(w.job for w in self.workers):
            for i, w in enumerate(self.workers):
                if w.job is None and queue:
                    if not w.process.is_alive():
                        w = self.workers[i] = self._spawn(w.gpu)
                    w.job = queue.popleft()
                    w.conn.send(w.job)
                    on_start(w.job, w.process.pid)
            busy = [w for w in self.workers if w.job is not None]
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy], 1.0))
            for w in self.workers:
                if w.job is None or not (w.conn in ready or w.process.sentinel in ready):
                    continue
                result = None
                if w.conn in ready or w.conn.poll():
                    with contextlib.suppress(EOFError, OSError):
                        result = w.conn.recv()
                job, w.job = w.job, None
                last_event = time.perf_counter()
                if result is not None:
                    on_done(job, result, None)
                    continue
                w.process.join(timeout=5)
                if w.process.is_alive():  # its pipe broke but it runs on: end it
                    w.process.kill()
                    w.process.join(timeout=5)
                error = (
                    f"worker pid {w.process.pid} died while running {job[0].label}\n"
                    f"{describe_exit(w.process.exitcode)}"
                )
                on_done(job, None, error)  # a fresh worker takes its slot's next job
            if time.perf_counter() - last_event >= HEARTBEAT_S:
                on_idle()
                last_event = time.perf_counter()


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    return env.split(",") if env else [str(i) for i in range(torch.cuda.device_count())]
