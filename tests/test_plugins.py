"""Plugins reach every process: a user's task registered in a file outside the repository."""

from __future__ import annotations

import multiprocessing as mp
import os
import textwrap

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan import plugins  # noqa: E402

PLUGIN = textwrap.dedent(
    """
    import torch
    from bench_mlkan.tasks import TASKS, FunctionRegression

    class Parabola(FunctionRegression):
        name = "test_plugin_parabola"

        def __init__(self, **kw):
            super().__init__(lambda p: p[:, :1] ** 2, [(-1.0, 1.0)], n_train=16, n_test=8,
                             eval_points_per_dim=5, **kw)

    if "test_plugin_parabola" not in TASKS:
        TASKS.register("test_plugin_parabola", Parabola)
    """
)


def _child_sees_task(queue) -> None:
    from bench_mlkan.tasks import TASKS

    before = "test_plugin_parabola" in TASKS
    plugins.load_plugins_from_env()
    queue.put((before, "test_plugin_parabola" in TASKS))


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    path = tmp_path / "user_plugin.py"
    path.write_text(PLUGIN)
    monkeypatch.delenv(plugins.ENV, raising=False)
    yield path
    from bench_mlkan.tasks import TASKS

    TASKS.pop("test_plugin_parabola", None)
    plugins._loaded.clear()


def test_a_plugin_file_registers_in_this_and_in_spawned_processes(plugin_file):
    assert plugins.load_plugins([str(plugin_file)]) == [str(plugin_file.resolve())]
    from bench_mlkan.tasks import TASKS

    assert "test_plugin_parabola" in TASKS
    assert os.environ[plugins.ENV] == str(plugin_file.resolve())
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_sees_task, args=(queue,))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) == (False, True)


def test_a_broken_plugin_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(plugins.PluginError, match="broken.py.*RuntimeError: boom"):
        plugins.load_plugins([str(bad)])
    with pytest.raises(plugins.PluginError, match="'no_such_module_xyz' failed to import"):
        plugins.load_plugins(["no_such_module_xyz"])
