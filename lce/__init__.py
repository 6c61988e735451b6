"""lce: dissect vision models into tables of learned concepts and compare models by them."""

__version__ = "0.1.0"
