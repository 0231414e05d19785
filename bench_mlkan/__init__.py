"""bench-mlkan: benchmark suite for multilevel training of Kolmogorov-Arnold Networks."""

from . import peers  # noqa: F401  (registers the peer models in MODELS)
from .models import KAN, MLP, MODELS, MultichannelMLP, count_parameters
from .splines import Grid

__all__ = ["KAN", "MLP", "MODELS", "MultichannelMLP", "Grid", "count_parameters"]
__version__ = "0.1.0"
