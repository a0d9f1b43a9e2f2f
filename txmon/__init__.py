"""txmon: transaction monitoring data platform."""

__version__ = "0.7.0"
