"""The version of minigan, recorded in every checkpoint."""
__version__ = "0.2.0"
