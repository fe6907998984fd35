"""The method registry. Every module in this package registers one method with `@register`.

Adding a method is one new file here: `load_all()` imports every module of the package, so the suite schema,
`peftbench methods`, the runner, the report and the parametrized tests pick it up without edits elsewhere.
Method modules import torch/peft only inside their functions, so listing and validating never loads torch.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import PeftbenchError, did_you_mean
from .base import Method

_REGISTRY: dict[str, Method] = {}
_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: instantiate and register a method under `cls.name`."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def load_all() -> dict[str, Method]:
    """Import every method module once and return the registry (name -> Method), in name order."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Method:
    """The registered method called `name`, or a PeftbenchError with a 'did you mean'."""
    methods = load_all()
    if name not in methods:
        raise PeftbenchError(f"unknown method {name!r}{did_you_mean(name, methods)}; known: {', '.join(methods)}")
    return methods[name]
