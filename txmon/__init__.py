"""txmon: transaction monitoring data platform."""

from importlib import metadata

__version__ = metadata.version("txmon")  # pyproject.toml's, as installed
