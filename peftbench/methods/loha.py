"""LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS) via peft: the weight update is the Hadamard (elementwise) product
of two rank-r products, dW = (W1a W1b) * (W2a W2b) * alpha / r, so rank r reaches an update of rank up to r^2 for
twice LoRA's parameters. Mergeable. One suite entry with several ranks expands into runs loha-r4, loha-r8, ...

Unlike LoRA, peft's LyCORIS layers (LoHa, LoKr) build the full-size update dW for every wrapped linear at every
forward and apply it with F.linear(x, dW): the training cost grows with d_in x d_out per wrapped layer, not with r.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from ..arch import Footprint, Saved
from . import register
from .base import LOW_RANK_OPTIONS, Method, MethodSettings, Traits, classifier_copy
from .lora import expand_ranks


class LycorisSettings(MethodSettings):
    """Settings shared by the LyCORIS methods (LoHa, LoKr): LoRA's names where the meaning is the same."""

    ranks: list[PositiveInt] = Field([8], min_length=1, description="one run per rank")
    alpha: PositiveFloat | None = Field(None, description="alpha (scaling alpha/r); default 2 x rank")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (e.g. q,v)"
    )
    dropout: NonNegativeFloat = Field(0.0, le=1.0, description="rank_dropout: drops output rows of the update")
    module_dropout: NonNegativeFloat = Field(0.0, le=1.0,
                                             description="probability of skipping a whole adapter per step")


def lycoris_kwargs(settings: LycorisSettings, ctx) -> dict:
    """The LycorisConfig fields LoHa and LoKr share, for one resolved run (one rank)."""
    rank = settings.ranks[0]
    return {
        "task_type": ctx.peft_task_type,
        "r": rank,
        # peft's own MetaMathQA comparison runs LoHa and LoKr at alpha = 2r (r=32, alpha=64), as this project's LoRA
        "alpha": settings.alpha if settings.alpha is not None else 2 * rank,
        "rank_dropout": settings.dropout,
        "module_dropout": settings.module_dropout,
        "target_modules": settings.target_modules,
    }


def lycoris_footprint(arch, settings: LycorisSettings, per_linear, transient_units: int):
    """The footprint of a LyCORIS method whose layer holds `per_linear(d_in, d_out, r)` -> list of tensor sizes.

    Saved per token per wrapped block linear: the input of F.linear(x, dW), cast to the fp32 adapter dtype (for
    dW's gradient). Saved per block: the fp32 update dW itself (d_in x d_out per wrapped linear), which F.linear
    keeps for the input's gradient: a per-block term independent of tokens (`saved_per_block`, in the adapter
    dtype whatever the model's precision). Transient: `transient_units` dW-sized fp32 temporaries of the largest
    wrapped linear (building dW in forward, its gradient in backward)."""
    r = settings.ranks[0]
    wrapped = arch.targets(settings.target_modules, arch.lora_defaults)
    params, saved, largest = 0, [], 0
    for m in wrapped:
        sizes = per_linear(m.d_in, m.d_out, r)
        params += sum(sizes) * (arch.layers if arch.in_block(m) else 1)
        largest = max([largest, *sizes])
        if arch.in_block(m):
            saved.append(Saved(m.d_in, "fp32"))
    head = classifier_copy(arch)
    block = [m for m in wrapped if arch.in_block(m)]
    return Footprint(
        trainable=params + head, added=params + head, saved=tuple(saved), largest_trainable=max(largest, head),
        saved_per_block=sum(m.d_in * m.d_out for m in block),
        transient_fp32=transient_units * max((m.d_in * m.d_out for m in wrapped), default=0))


def loha_tensors(d_in: int, d_out: int, r: int) -> list[int]:
    """peft LoHaLayer.create_adapter_parameters for nn.Linear: hada_w1_a, hada_w2_a (d_out x r) and hada_w1_b,
    hada_w2_b (r x d_in)."""
    return [d_out * r, r * d_in, d_out * r, r * d_in]


@register
class LoHa(Method):
    name = "loha"
    summary = "LoHa: Hadamard product of two low-rank updates (LyCORIS)"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "low-rank"
    peft_type = "LOHA"
    options = LOW_RANK_OPTIONS
    Settings = LycorisSettings
    test_settings = (
        {"ranks": [8]},
        {"ranks": [4], "target_modules": "all-linear"},
        {"ranks": [16], "target_modules": ["q_proj", "o_proj", "down_proj"]},
    )
    default_learning_rate = 5e-4  # LoRA's: the same scale of factors and the same alpha = 2r convention

    def expand(self, settings):
        return expand_ranks(self, settings)

    def rank(self, settings):
        return settings.ranks[0]

    def footprint(self, arch, settings):
        """2 r (d_in + d_out) per wrapped linear; saved and transient memory as in `lycoris_footprint`. Forward
        (HadaWeight) holds W1a W1b, W2a W2b and their product at once; backward the incoming gradient, its scaled
        copy, a rebuilt product and the masked gradient: about 4 dW-sized temporaries."""
        return lycoris_footprint(arch, settings, loha_tensors, transient_units=4)

    def prepare(self, model, settings, ctx):
        from peft import LoHaConfig, get_peft_model

        return get_peft_model(model, LoHaConfig(**lycoris_kwargs(settings, ctx)))
