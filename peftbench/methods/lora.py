"""LoRA (Hu et al. 2021) via peft; one suite entry with several ranks expands into runs lora-r4, lora-r8, ..."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from ..arch import Footprint, Saved
from . import register
from .base import LOW_RANK_OPTIONS, Advice, Method, MethodSettings, RunPlan, Traits, classifier_copy


class LoraSettings(MethodSettings):
    ranks: list[PositiveInt] = Field([8], min_length=1, description="one run per rank")
    alpha: PositiveFloat | None = Field(None, description="lora_alpha; default 2 x rank")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (e.g. q,v)"
    )
    dropout: NonNegativeFloat = Field(0.05, le=1.0, description="lora_dropout")


def lora_config(settings: LoraSettings, ctx, **variant):
    """The peft LoraConfig for one resolved run (settings.ranks holds exactly one rank after expand); `variant`
    passes a LoRA variant's own LoraConfig fields (use_dora, use_rslora, init_lora_weights)."""
    from peft import LoraConfig

    rank = settings.ranks[0]
    return LoraConfig(
        task_type=ctx.peft_task_type,
        r=rank,
        lora_alpha=settings.alpha if settings.alpha is not None else 2 * rank,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        **variant,
    )


def lora_footprint(arch, settings: LoraSettings, quantized: bool = False, int8: bool = False):
    """LoRA's trainable A (r x d_in) and B (d_out x r) per wrapped linear, once per block for block linears.

    Saved activations per wrapped block linear: peft casts the input to the fp32 adapter dtype and applies dropout
    (fp32 output + a 1-byte mask; without dropout, the fp32 input), and lora_B saves lora_A's r outputs.
    """
    r = settings.ranks[0]
    wrapped = arch.targets(settings.target_modules, arch.lora_defaults)
    params, saved = 0, []
    for m in wrapped:
        params += r * (m.d_in + m.d_out) * (arch.layers if arch.in_block(m) else 1)
        if arch.in_block(m):
            saved += [Saved(m.d_in, "fp32"), Saved(r, "fp32")] + ([Saved(m.d_in, "mask")] if settings.dropout else [])
    head = classifier_copy(arch)
    largest = max([r * max(m.d_in, m.d_out) for m in wrapped] + [head], default=0)
    return Footprint(trainable=params + head, added=params + head, quantized=quantized or int8, int8=int8,
                     saved=tuple(saved), largest_trainable=largest, notes=rank_notes(r, wrapped))


def rank_notes(r: int, wrapped) -> tuple[str, ...]:
    """A rank above a wrapped layer's smaller dimension trains parameters that add no direction."""
    over = [m for m in wrapped if r > min(m.d_in, m.d_out)]
    if not over:
        return ()
    m = min(over, key=lambda m: min(m.d_in, m.d_out))
    return (f"rank {r} is above the smaller dimension of {m.path} ({min(m.d_in, m.d_out)}): an update of that "
            f"layer has at most {min(m.d_in, m.d_out)} independent directions, the rest of the rank only costs memory",)


def quantized_lora(model, settings: LoraSettings, ctx):
    """LoRA on a bitsandbytes-quantized base, so that the run differs from 16-bit LoRA by its 4-bit (or 8-bit) base
    weights alone.

    peft's `prepare_model_for_kbit_training` is not called. Of its steps, freezing the base is what get_peft_model
    does anyway, input gradients are needed only by reentrant checkpointing (every method here checkpoints
    non-reentrant, enabled with models.CHECKPOINT_KWARGS by models.load_prepared), and its re-enabling of
    checkpointing used empty kwargs, which silently made QLoRA checkpoint reentrant. Its last step casts every
    non-quantized 16-bit parameter (embeddings, norms, lm_head) to fp32, a guard for fp16 training: in a
    `precision: bf16` run that made the residual stream, attention and the lm_head matmul compute in fp32
    (bitsandbytes' Linear4bit returns its input's dtype) while LoRA ran in bf16, so QLoRA measured slower and bigger
    than the bf16 QLoRA people run (Unsloth; TRL with bf16) and than the memory model, which assumes 2-byte
    activations; casting back afterwards would still put the fp32 copies in the measured load peak. fp32 and
    mixed-precision runs load fp32 weights, so for them nothing changes.
    """
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad = False
    return get_peft_model(model, lora_config(settings, ctx))


def expand_ranks(method: Method, settings: LoraSettings) -> list[RunPlan]:
    """A run per rank, named '<method>-r<rank>'."""
    plans = []
    for rank in dict.fromkeys(settings.ranks):  # keep order, drop repeats
        resolved = settings.model_copy(update={"ranks": [rank]}).model_dump()
        plans.append(RunPlan(f"{method.name}-r{rank}", method.name, resolved))
    return plans


@register
class Lora(Method):
    name = "lora"
    summary = "LoRA: low-rank update on frozen weights"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "low-rank"
    peft_type = "LORA"
    options = LOW_RANK_OPTIONS
    Settings = LoraSettings
    test_settings = (
        {"ranks": [8]},
        {"ranks": [16], "target_modules": "all-linear"},
        {"ranks": [4], "target_modules": ["q_proj", "o_proj", "down_proj"]},
    )
    default_learning_rate = 5e-4
    advice = Advice(
        prior=0.0,
        why="LoRA on every linear layer matches full fine-tuning at small and medium data sizes (Schulman et al. "
            "2025, LoRA Without Regret; Dettmers et al. 2023, QLoRA)",
        learning_rate=2e-4,  # about 10x full fine-tuning's (LoRA Without Regret); QLoRA's 7B-13B rate
        candidates=(*({"ranks": [r], "target_modules": "all-linear"} for r in (8, 16, 64, 256)), {"ranks": [16]}),
    )

    def expand(self, settings):
        return expand_ranks(self, settings)

    def rank(self, settings):
        return settings.ranks[0]

    def footprint(self, arch, settings):
        return lora_footprint(arch, settings)

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(settings, ctx))
