"""The ``poolbench`` command line: a thin Typer adapter over the ``poolbench`` library."""
