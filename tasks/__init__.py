"""Benchmark tasks (installed as ``bench_mlkan.tasks``): one module per problem.

``TASKS[name](**options)`` builds a task; see ``bench_mlkan.task`` for the contract.

=======================  ======================================================
``regression_rotated``   the paper's rotated regression target (METHOD.md 5.1)
``function_regression``  regression of any user callable
``poisson_interface_2d`` discontinuous-coefficient Poisson PINN (METHOD.md 5.2)
``burgers_1d``           Burgers PINN, ``nu`` selectable (METHOD.md 5.3)
``burgers_1d_standard``  the same with the standard nu = 0.01 / pi
``allen_cahn_1d``        Allen-Cahn PINN (METHOD.md 5.4)
``poisson_2d``           lap u = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2
``helmholtz_2d``         lap u + u = q, u = sin(pi x) sin(4 pi y) on [-1, 1]^2
=======================  ======================================================

Every PINN task takes ``size`` ("paper", "small", "tiny") plus explicit point counts.
"""

from __future__ import annotations

from bench_mlkan.registry import Registry
from bench_mlkan.task import Task

from .allen_cahn import AllenCahn1D
from .burgers import Burgers1D, Burgers1DStandard
from .helmholtz import Helmholtz2D
from .pinn import PINNTask
from .poisson import Poisson2D
from .poisson_interface import PoissonInterface2D
from .regression import FunctionRegression, RotatedRegression

TASKS: Registry[type[Task]] = Registry(
    "task",
    {
        cls.name: cls
        for cls in (
            RotatedRegression,
            FunctionRegression,
            PoissonInterface2D,
            Burgers1D,
            Burgers1DStandard,
            AllenCahn1D,
            Poisson2D,
            Helmholtz2D,
        )
    },
)

__all__ = [
    "TASKS",
    "Task",
    "PINNTask",
    "AllenCahn1D",
    "Burgers1D",
    "Burgers1DStandard",
    "FunctionRegression",
    "Helmholtz2D",
    "Poisson2D",
    "PoissonInterface2D",
    "RotatedRegression",
]
