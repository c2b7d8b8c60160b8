"""poolbench: which pooling layer should my CNN use? Measured, not guessed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("poolbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
