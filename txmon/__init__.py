"""txmon: transaction monitoring data platform."""

__version__ = "0.6.0"
