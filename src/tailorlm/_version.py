"""The package version, in a module of its own so that subpackages need not import ``tailorlm``."""

__version__ = "0.2.0"
