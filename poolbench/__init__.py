"""poolbench: which pooling layer should my CNN use? Measured, not guessed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("poolbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "replace_pools"]


def __getattr__(name: str):  # the library's entry points, imported on first use (torch is slow)
    if name == "replace_pools":
        from poolbench.models.replace import replace_pools

        return replace_pools
    raise AttributeError(f"module 'poolbench' has no attribute {name!r}")
