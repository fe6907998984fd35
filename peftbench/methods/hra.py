"""HRA (Yuan et al. 2024, Householder reflection adaptation) via peft: each wrapped linear's weight is multiplied by
a chain of r trained Householder reflections, W (I - 2 u1 u1^T) ... (I - 2 ur ur^T): an orthogonal update whose
r vectors u (d_in each) are all that trains. Mergeable (the product is folded into W). One suite entry with several
ranks expands into runs hra-r4, hra-r8, ...

Memory: peft builds the whole d_in x d_in product in fp32 at every forward (HRALayer.get_delta_weight, Linear.forward),
so unlike LoRA its saved tensors grow with d_in squared, not with the tokens.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from ..arch import Footprint, Saved
from . import register
from .base import LOW_RANK_OPTIONS, Method, MethodSettings, Traits, classifier_copy
from .lora import expand_ranks


class HraSettings(MethodSettings):
    ranks: list[PositiveInt] = Field([8], min_length=1, description="reflections per wrapped linear; one run per value")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (LoRA's)"
    )
    apply_gs: bool = Field(False, description="apply_GS: orthogonalise the vectors (Gram-Schmidt) before reflecting")


@register
class Hra(Method):
    name = "hra"
    summary = "HRA: a chain of trained Householder reflections on each wrapped weight"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "orthogonal"
    peft_type = "HRA"
    options = {k: v for k, v in LOW_RANK_OPTIONS.items() if k != "alpha"}  # HRA has no scaling alpha
    Settings = HraSettings
    test_settings = ({"ranks": [8]}, {"ranks": [4], "target_modules": "all-linear"})
    # the vectors start as a symmetric pair (the product is the identity), as LoRA's B = 0: LoRA's rate
    default_learning_rate = 5e-4

    def expand(self, settings):
        return expand_ranks(self, settings)

    def rank(self, settings):
        return settings.ranks[0]

    def footprint(self, arch, settings):
        """r x d_in trained per wrapped linear (hra_u). Saved for backward per wrapped block linear, in fp32 (peft's
        adapter dtype), besides the input it casts to fp32 (per token): the r d_in x d_in partial products of the
        reflection chain (the first is the identity it starts from), the identity the forward multiplies it into,
        and the d_out x d_in product weight F.linear uses; on a 16-bit base also the fp32 copy of the frozen weight.
        Transient: two d_in x d_in temporaries of one reflection step."""
        r = settings.ranks[0]
        wrapped = arch.targets(settings.target_modules, arch.lora_defaults)
        params = sum(r * m.d_in * (arch.layers if arch.in_block(m) else 1) for m in wrapped)
        block = [m for m in wrapped if arch.in_block(m)]
        head = classifier_copy(arch)
        return Footprint(
            trainable=params + head, added=params + head, saved=tuple(Saved(m.d_in, "fp32") for m in block),
            saved_per_block=sum((r + 1) * m.d_in * m.d_in + m.d_out * m.d_in for m in block),
            weight_copies=sum(m.d_out * m.d_in for m in block),
            transient_fp32=max((2 * m.d_in * m.d_in for m in wrapped), default=0),
            largest_trainable=max([r * m.d_in for m in wrapped] + [head], default=0))

    def prepare(self, model, settings, ctx):
        from peft import HRAConfig, get_peft_model

        config = HRAConfig(task_type=ctx.peft_task_type, r=settings.ranks[0], apply_GS=settings.apply_gs,
                           target_modules=settings.target_modules)
        return get_peft_model(model, config)
