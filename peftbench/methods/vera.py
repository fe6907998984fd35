"""VeRA (Kopiczko et al. 2024) via peft: one pair of frozen random projections A (r x d_in) and B (d_out x r), shared
by every wrapped linear, and per wrapped linear two trained vectors, lambda_d (r) and lambda_b (d_out):
dW = diag(lambda_b) B diag(lambda_d) A. Mergeable.

Shapes: peft sizes the shared A and B for the largest input and output width among the wrapped linears and hands
each layer the slice it needs (VeraModel._find_dim, peft 0.21), so targets of different shapes (a grouped-query
v_proj narrower than q_proj, fc1 and fc2) can be wrapped together. A and B are buffers: saved with the adapter
(save_projection), never counted as parameters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from ..arch import Footprint, Saved
from . import register
from .base import Method, MethodSettings, Traits, classifier_copy, target_list

# peft's VeRA default targets are LoRA's except for phi (TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING, peft
# 0.21); tests/test_methods_more_a.py checks this against peft.
VERA_DEFAULTS = {"phi": ("q_proj", "v_proj")}


class VeraSettings(MethodSettings):
    rank: PositiveInt = Field(256, description="rank of the shared random projections (peft's default 256)")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (e.g. q,v)"
    )


@register
class Vera(Method):
    name = "vera"
    summary = "VeRA: trained scaling vectors on shared frozen random projections"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "scaling"
    peft_type = "VERA"
    options = {"rank": ("rank", int), "targets": ("target_modules", target_list)}
    Settings = VeraSettings
    test_settings = ({}, {"rank": 64, "target_modules": "all-linear"})  # one A, B for q/k/v/o/gate/up/down widths
    # vectors, not matrices, with a zero-initialised lambda_b: rates an order above LoRA's, as for IA3
    default_learning_rate = 1e-2

    def footprint(self, arch, settings):
        """lambda_d (r) and lambda_b (d_out) per wrapped linear. Saved per wrapped block linear (peft vera/layer.py
        Linear.forward: lambda_b * F.linear(lambda_d * F.linear(x, A), B)): the r projections lambda_d multiplies
        and the d_out outputs lambda_b multiplies, both fp32; the input itself is not saved, since nothing before
        lambda_d is trained."""
        r = settings.rank
        wrapped = arch.targets(settings.target_modules, VERA_DEFAULTS.get(arch.model_type, arch.lora_defaults))
        params, saved = 0, []
        for m in wrapped:
            params += (r + m.d_out) * (arch.layers if arch.in_block(m) else 1)
            if arch.in_block(m):
                saved += [Saved(r, "fp32"), Saved(m.d_out, "fp32")]
        head = classifier_copy(arch)
        return Footprint(trainable=params + head, added=params + head, saved=tuple(saved),
                         largest_trainable=max([r, *(m.d_out for m in wrapped), head]))

    def prepare(self, model, settings, ctx):
        from peft import VeraConfig, get_peft_model

        config = VeraConfig(task_type=ctx.peft_task_type, r=settings.rank, target_modules=settings.target_modules)
        return get_peft_model(model, config)
