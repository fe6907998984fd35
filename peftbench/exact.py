"""Exact parameter counts without weights: build the architecture on the meta device, apply the method with peft.

Torch side (imports torch, transformers, peft), used by `peftbench plan` and the tests. A meta-device model holds
shapes and no storage, so Llama-2-70B builds in about a second in little memory. The method's own `prepare` is
applied (with `counting_settings`, e.g. prompt tuning's text init needs a tokenizer and real embeddings), and the
counts come from peft's counter as in measure.count_parameters. A QLoRA model is counted unquantized: peft's
counter reports 4-bit weights at their element count, so the totals are the same (tests/test_integration.py).
"""

from __future__ import annotations

from typing import Any

from .arch import Arch
from .models import quiet_libraries


def skip_bitsandbytes() -> None:
    """For a process that only counts (`peftbench plan`): make peft and transformers see no bitsandbytes.

    Counting builds QLoRA unquantized (see the module docstring), so it never needs bitsandbytes, and importing it
    costs about 1.5 s of `plan`'s 15 s budget (its ops compile hooks import torch._dynamo). `importlib.util.find_spec`
    answers None for a name whose sys.modules entry is None, which is how both libraries probe for it. Never call
    this in a process that may train (the worker, the tests): it hides bitsandbytes for the rest of the process.
    """
    import sys

    if "bitsandbytes" not in sys.modules:
        sys.modules["bitsandbytes"] = None


def meta_model(config: dict[str, Any], task: str, num_labels: int = 2):
    """The architecture of `config` on the meta device, with the head `task` needs."""
    quiet_libraries()
    import torch
    from transformers import AutoConfig

    from . import tasks
    from .suite import ModelConfig

    fields = {k: v for k, v in config.items() if not k.startswith("_")}
    cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    kind = tasks.get(task)
    for key, value in kind.model_kwargs(ModelConfig(name="meta", task=task, num_labels=num_labels)).items():
        setattr(cfg, key, value)  # from_config takes no model kwargs: they are config fields (num_labels)
    with torch.device("meta"):
        return kind.auto_class().from_config(cfg)


def exact_counts(config: dict[str, Any], task: str, method: str, settings: dict[str, Any],
                 num_labels: int = 2) -> tuple[int, int]:
    """(trainable, total) parameters of `method` with `settings` applied to the model of `config`."""
    import torch

    from . import methods as registry
    from .context import meta_context
    from .measure import count_parameters

    m = registry.get(method)
    resolved = m.counting_settings(m.Settings.model_validate(settings))
    model = meta_model(config, task, num_labels)
    ctx = meta_context(task)
    # The method's new modules (LoRA matrices, prompt embeddings) must land on the meta device too: otherwise peft
    # allocates and initialises them for real (about 3 s and 160 MB for LoRA r16 on every linear of a 7B model).
    with torch.device("meta"):
        return count_parameters(m.prepare(model, resolved, ctx))


def arch_counts(arch: Arch, method: str, settings: dict[str, Any]) -> tuple[int, int]:
    """(trainable, total) from the analytic footprint, for comparison with exact_counts."""
    from . import methods as registry

    m = registry.get(method)
    fp = m.footprint(arch, m.Settings.model_validate(settings))
    return fp.trainable, arch.total_params + fp.added
