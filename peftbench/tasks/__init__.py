"""The task registry. Every module in this package registers one task kind with `@register`.

A task kind (classification, causal LM, ...) is everything that differs between what models are asked to do:
how data rows are normalised and encoded, which model class and peft task type it uses, how it is evaluated,
which metrics apply, whether it generates (and so what latency means). Adding one is one new file here: the suite
schema, the CLI's choices, the data loader, the worker, the estimator and merge read it from the registry.
Task modules import torch and transformers only inside their functions, so the registry loads without torch.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import PeftbenchError, did_you_mean
from .base import TaskKind

DEFAULT = "causal_lm"  # what `estimate` and `recommend` assume when --task is not given
_REGISTRY: dict[str, TaskKind] = {}
_loaded = False


def register(cls: type[TaskKind]) -> type[TaskKind]:
    """Class decorator: instantiate and register a task kind under `cls.name`."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"task {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def load_all() -> dict[str, TaskKind]:
    """Import every task module once and return the registry (name -> TaskKind), in name order."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return dict(sorted(_REGISTRY.items()))


def names() -> tuple[str, ...]:
    return tuple(load_all())


def get(name: str) -> TaskKind:
    """The task kind called `name`, or a PeftbenchError with a 'did you mean'."""
    kinds = load_all()
    if name not in kinds:
        raise PeftbenchError(f"unknown task {name!r}{did_you_mean(name, kinds)}; known: {', '.join(kinds)}")
    return kinds[name]


def by_peft_type(peft_task_type: str) -> TaskKind:
    """The task kind of a peft `task_type` (as an adapter_config.json names it)."""
    for kind in load_all().values():
        if kind.peft_task_type == peft_task_type:
            return kind
    known = ", ".join(k.peft_task_type for k in load_all().values())
    raise PeftbenchError(f"task_type {peft_task_type!r} is not supported ({known})")
