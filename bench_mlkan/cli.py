"""Command line: ``python -m bench_mlkan COMMAND [options]``.

Each command lives in its own module with a ``main(argv) -> int``; this file only
dispatches, so adding a command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import os
import sys

#: glibc allocator settings for every command (``make`` sets them too): with glibc's
#: defaults, large layers ran 4-5x slower here (a page fault on every big temporary).
RUNTIME_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4294967296"}

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("bench_mlkan.bench", "run a benchmark profile and render the leaderboards"),
    "run": ("bench_mlkan.bench", "run one task x baseline x seed and write its JSON record"),
    "leaderboard": ("bench_mlkan.reporting.cli", "render the leaderboards from stored records"),
    "tune": ("bench_mlkan.tuning.cli", "Optuna study over a baseline's search space"),
    "perf": ("bench_mlkan.devtools.perf", "time the evaluation paths (make perf)"),
}


def _usage() -> str:
    lines = ["usage: python -m bench_mlkan COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, f"{command}_main", None) or module.main
    return int(entry(rest) or 0)


def ensure_runtime_env() -> None:
    """Re-execute this process once with ``RUNTIME_ENV`` set where it is missing (glibc
    reads these variables only at start-up), so ``run``, ``bench`` and ``tune`` get the
    same allocator settings whether started by make or by hand.
    ``BENCH_MLKAN_NO_REEXEC=1`` turns this off."""
    missing = {k: v for k, v in RUNTIME_ENV.items() if k not in os.environ}
    if not missing or sys.platform != "linux" or os.environ.get("BENCH_MLKAN_NO_REEXEC"):
        return
    os.environ.update(missing)
    os.environ["BENCH_MLKAN_NO_REEXEC"] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def entry() -> None:
    """Process entry point (``python -m bench_mlkan``, the ``bench-mlkan`` script)."""
    ensure_runtime_env()
    sys.exit(main())


if __name__ == "__main__":
    entry()
