"""dlapps: reproduce, explain and extend deep-learning-applications experiments on image classifiers."""

from dlapps.errors import DlappsError

__version__ = "0.1.0"
__all__ = ["DlappsError", "__version__"]
