"""The package version, importable without importing the package's top (and the agent)."""

__version__ = "0.1.0"
