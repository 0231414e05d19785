"""Optuna studies: tune a baseline's hyperparameters and its split of a fixed work budget.

``python -m bench_mlkan tune --task T --baseline B --trials N --budget W`` (``make tune
TUNE_ARGS="..."``) searches ``baselines/B/search_space.json`` on task T. Every trial trains
with exactly ``work_budget = W`` (in the config's ``cost_model`` units, see ``work.py``) and
its objective, named ``"log10 <metric>"`` in the study, is ``log10`` of the task's metric
at the end of that budget (``TASKS[T].metric`` in the task's ``direction``; ``--metric``
overrides the metric).

Modules (no cycles; each imports only those above it):

* ``space`` - search spaces as data and trial -> config (``load_space``, ``suggest``,
  ``StudySpec``, ``trial_config``, ``validate_spec``);
* ``objective`` - train one trial, pruning at level boundaries (``LevelPruning``);
* ``storage`` - ``--storage`` forms, Optuna storages with heartbeats;
* ``queue`` - the distributed trial queue (``prepare_study``, ``run_worker``);
* ``report`` - tuned config, summary, plots;
* ``cli`` - the command line (``tune_main``).

Search spaces (data, AlgoPerf style; ``suggest`` is the one function that reads them)::

    {"parameters": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true},
                    "model_options.grid_size": {"type": "int", "low": 3, "high": 8},
                    "optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
                    "budget_fractions": {"type": "budget_split", "levels": {"low": 1, "high": 4}}},
     "tasks": {"regression_rotated": {"lr": {...}, "warmup_steps": null}}}

Keys are RunConfig fields; a dotted key reaches into a nested dict (``model_options.grid_size``
sets ``model_options["grid_size"]``). ``tasks[T]`` replaces entries on task T (``null``
removes one). Categorical choices may be lists or dicts (suggested by their JSON text).
The special ``budget_split`` entry makes "Optuna tunes budgets" literal: it suggests the
number of levels L (``levels``; ``high: null`` = the baseline's levels on the task) and one
``u_l`` in (0, 1] per level, and sets ``budget_fractions[l] = -log u_l / sum_m(-log u_m)``
(uniform u gives a Dirichlet(1, ..., 1) split). A single-level baseline keeps its one
trained level (``budget_fractions`` one-hot from its schedule). ``--set key=value`` fixes a
field for every trial (JSON values; dotted keys; the bench's parser) and removes it from
the space. Before the first trial the base config, the task built from it and the configs
at the corners of the space are validated (one-line error, exit 2).

Warning: with ``cost_model`` "paper" a step costs grid_size / base grid, so a larger base
``grid_size`` is not charged more; compare grid sizes with ``--set cost_model='"macs"'``.

Pruning, the trial queue and workers: see ``objective`` and ``queue``. Distribution:
``--workers K`` starts K worker processes on one study; ``--gpus 0,1,...`` starts one
single-device worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned, round-robin when K > number
of GPUs). Never DDP inside a trial. Workers get the parent's options, ``--plugin`` ones
included (and inherit ``$BENCH_MLKAN_PLUGINS``). Many machines join one study by running the
same command with the same ``--storage`` URL and ``--study`` name.

Outputs go to ``--out DIR``, else ``$BENCH_MLKAN_HOME``, else the current directory:

* storage: ``<out>/studies/optuna.db`` - one SQLite file holding every study by name
  (``optuna-dashboard sqlite:///<out>/studies/optuna.db`` lists them); ``--storage
  journal`` uses ``<out>/studies/journal.log``; any SQLAlchemy URL serves many machines;
* ``<out>/studies/<study>/``: ``README.md`` (counts, best trial, importances) and Optuna's
  matplotlib plots (history, importances, intermediate values, parallel coordinates) as
  PNG (200 dpi) and SVG;
* ``<out>/tuned/<baseline>/<task>.json``: the study's own best trial (``"config"`` is what
  ``baseline_config(..., tuned=True)`` merges; ``"study"`` and ``"date"`` say where and
  when; ``"stripped"`` lists the ``--set task_options`` the study ran with that the config
  leaves out, so it runs at full size). A study without a complete trial writes none and
  moves a previous one aside (``<task>.json.stale``).

``--wandb`` mirrors every trial to Weights & Biases (offline without a key; ``WANDB_MODE``
honoured), with the trial's state in its summary and tags.
"""

from __future__ import annotations

from . import objective  # noqa: F401 - the module (tests patch objective.train)
from .cli import (
    build_parser,
    default_study_name,
    launch_workers,
    main,
    namespace_argv,
    parse_args,
    spec_from_args,
    tune,
    tune_main,
    worker_argv,
)
from .objective import LevelPruning, log_value
from .queue import (
    META_KEY,
    Heartbeat,
    fail_stale_trials,
    failed_trials,
    make_pruner,
    make_sampler,
    pop_waiting,
    prepare_study,
    run_worker,
    trial_counts,
)
from .report import best_trial, save_plots, write_summary, write_tuned
from .space import (
    PLACEMENT_KEYS,
    StudySpec,
    corner_params,
    default_fractions,
    load_space,
    suggest,
    trial_config,
    validate_spec,
)
from .storage import is_journal, make_storage, redact, resolve_storage

__all__ = [
    "META_KEY",
    "PLACEMENT_KEYS",
    "Heartbeat",
    "LevelPruning",
    "StudySpec",
    "best_trial",
    "build_parser",
    "corner_params",
    "default_fractions",
    "default_study_name",
    "fail_stale_trials",
    "failed_trials",
    "is_journal",
    "launch_workers",
    "load_space",
    "log_value",
    "main",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "namespace_argv",
    "parse_args",
    "pop_waiting",
    "prepare_study",
    "redact",
    "resolve_storage",
    "run_worker",
    "save_plots",
    "spec_from_args",
    "suggest",
    "trial_config",
    "trial_counts",
    "tune",
    "tune_main",
    "validate_spec",
    "worker_argv",
    "write_summary",
    "write_tuned",
]
