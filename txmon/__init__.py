"""txmon: transaction monitoring data platform."""

__version__ = "0.3.0"
