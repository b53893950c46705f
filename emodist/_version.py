"""The version of emodist (read by the packaging too)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
