"""Network architectures, by registry name (:mod:`poolbench.models.registry`), and what can be
seen of a built one without training it (:mod:`poolbench.models.inspect`).

May import ``core`` and ``pooling``. Importing the package registers every architecture.
"""

from poolbench.core.registry import import_submodules
from poolbench.models.registry import (
    MODELS,
    build_model,
    create_model,
    list_models,
    register_model,
)

import_submodules(__name__, __path__, skip=("registry", "inspect"))

__all__ = ["MODELS", "build_model", "create_model", "list_models", "register_model"]
