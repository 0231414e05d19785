"""Leaderboards from run records: pages, tables (markdown, CSV, JSON), figures, the
``leaderboard`` command. Rendering only: every number comes from ``bench_mlkan.scoring``.

Modules: ``render`` (``render``, ``render_all``, ``load_records``), ``pages`` (markdown
pages), ``tables`` (one experiment's table as markdown cells, CSV, JSON), ``notes``
(reproduction notes), ``figures`` + ``style`` + ``spectra`` (figures), ``perf_figure``
(the ``make perf`` figure), ``cli`` (``python -m bench_mlkan leaderboard``).
"""

from .cli import leaderboard_main
from .render import (
    Written,
    default_out_root,
    load_records,
    profile_folders,
    render,
    render_all,
)
from .tables import failure_reason

__all__ = [
    "Written",
    "default_out_root",
    "failure_reason",
    "leaderboard_main",
    "load_records",
    "profile_folders",
    "render",
    "render_all",
]
