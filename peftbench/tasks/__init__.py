"""The task registry. Every module in this package registers one task kind with `@register`.

A task kind (classification, causal LM, ...) is everything that differs between what models are asked to do:
how data rows are normalised and encoded, which model class and peft task type it uses, how it is evaluated,
which metrics apply, whether it generates (and so what latency means). Adding one is one new file here: the suite
schema, the CLI's choices, the data loader, the worker, the estimator and merge read it from the registry.
Task modules import torch and transformers only inside their functions, so the registry loads without torch.
"""

from __future__ import annotations

from ..errors import PeftbenchError
from ..registry import Registry
from .base import TaskKind

DEFAULT = "causal_lm"  # what `estimate` and `recommend` assume when --task is not given
_registry: Registry[TaskKind] = Registry(__name__, __path__, "task")
register = _registry.register  # class decorator: `@register class CausalLM(TaskKind): ...`
load_all = _registry.load_all  # name -> TaskKind, every task module imported once
get = _registry.get  # the task kind called `name`, or a PeftbenchError with a 'did you mean'


def names() -> tuple[str, ...]:
    return tuple(load_all())


def by_peft_type(peft_task_type: str) -> TaskKind:
    """The task kind of a peft `task_type` (as an adapter_config.json names it)."""
    for kind in load_all().values():
        if kind.peft_task_type == peft_task_type:
            return kind
    known = ", ".join(k.peft_task_type for k in load_all().values())
    raise PeftbenchError(f"task_type {peft_task_type!r} is not supported ({known})")
