"""The library version (a leaf module: persistence reads it without importing the package)."""

__version__ = "0.1.0.dev0"
