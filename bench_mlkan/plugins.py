"""Plugins: user modules that register tasks, models or baselines, imported in every process.

``--plugin NAME`` (repeatable, on ``bench``, ``run`` and ``tune``) names a module
(``my_pkg.kan_ext``) or a Python file (``./my_task.py``); installed packages can declare
an entry point in the group ``bench_mlkan.plugins`` instead, e.g. in their pyproject.toml::

    [project.entry-points."bench_mlkan.plugins"]
    my_ext = "my_pkg.kan_ext"

A plugin module registers what it adds when imported::

    from bench_mlkan.tasks import TASKS
    TASKS.register("my_task", MyTask)

``load_plugins`` imports them and records their names in ``$BENCH_MLKAN_PLUGINS``, which
spawned worker processes inherit and import again (``load_plugins_from_env``), so a user's
task, model or baseline works with any number of workers; machines that join a study pass
the same ``--plugin`` flags.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "bench_mlkan.plugins"
ENV = "BENCH_MLKAN_PLUGINS"
_loaded: dict[str, object] = {}


class PluginError(ImportError):
    """A plugin that cannot be imported; the message names it and the cause."""


def _import(name: str) -> object:
    if name in _loaded:
        return _loaded[name]
    try:
        if name.endswith(".py"):
            path = Path(name).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file {str(path)!r}")
            mod_name = f"bench_mlkan_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - reported with the plugin's name
        raise PluginError(f"plugin {name!r} failed to import: {type(e).__name__}: {e}") from e
    _loaded[name] = module
    return module


def _absolute(name: str) -> str:
    return str(Path(name).expanduser().resolve()) if name.endswith(".py") else name


def load_plugins(
    names: Iterable[str] = (), entry_point_group: str = ENTRY_POINT_GROUP
) -> list[str]:
    """Import the named plugins and every installed entry point of the group; remember them in
    ``$BENCH_MLKAN_PLUGINS`` for child processes. Returns the names imported."""
    wanted = [_absolute(n) for n in names]
    for ep in entry_points(group=entry_point_group):
        wanted.append(ep.module)
    known = [n for n in os.environ.get(ENV, "").split(os.pathsep) if n]
    for name in wanted:
        _import(name)
        if name not in known:
            known.append(name)
    if known:
        os.environ[ENV] = os.pathsep.join(known)
    return wanted


def load_plugins_from_env() -> list[str]:
    """Import the plugins a parent process recorded in ``$BENCH_MLKAN_PLUGINS`` (workers)."""
    names = [n for n in os.environ.get(ENV, "").split(os.pathsep) if n]
    for name in names:
        _import(name)
    return names
