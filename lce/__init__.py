"""lce: dissect vision models into tables of learned concepts and compare models by them."""

from base import __version__

__all__ = ["__version__"]
