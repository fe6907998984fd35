"""IA3 (Liu et al. 2022) via peft: learned rescaling vectors on keys, values and the feed-forward activations."""

from __future__ import annotations

from pydantic import Field

from ..arch import Footprint, Saved
from . import register
from .base import TARGETS_OPTION, Advice, Method, MethodSettings, Traits, classifier_copy


class IA3Settings(MethodSettings):
    target_modules: list[str] | None = Field(None, description="default: peft's per-architecture default")
    feedforward_modules: list[str] | None = Field(None, description="subset of target_modules scaled at the input")


@register
class IA3(Method):
    name = "ia3"
    summary = "IA3: learned scaling of keys, values and FFN activations"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "scaling"
    peft_type = "IA3"
    options = TARGETS_OPTION
    Settings = IA3Settings
    default_learning_rate = 1e-2
    advice = Advice(
        prior=-1.0,
        why="trains about 0.01% of the weights: strong in few-shot settings (Liu et al. 2022, T-Few), behind LoRA "
            "with more data (PEFT MetaMathQA, 20,000 examples: 0.41 vs LoRA 0.48-0.53, full 0.50)",
        learning_rate=3e-3,
    )

    def footprint(self, arch, settings):
        """One vector per scaled module: its input width for feed-forward modules, its output width otherwise.
        Saved activations: the tensor each vector multiplies (the module's input or output)."""
        default_targets, default_ff = arch.ia3_defaults
        targets = arch.targets(settings.target_modules, default_targets)
        ff = settings.feedforward_modules if settings.feedforward_modules is not None else list(default_ff)
        params, saved = 0, []
        for m in targets:
            width = m.d_in if any(m.matches(t) for t in ff) else m.d_out
            params += width * (arch.layers if arch.in_block(m) else 1)
            if arch.in_block(m):  # peft casts a feed-forward input to the fp32 vector's dtype and saves that copy
                saved.append(Saved(width, "fp32" if any(m.matches(t) for t in ff) else "act"))
        head = classifier_copy(arch)
        return Footprint(trainable=params + head, added=params + head, saved=tuple(saved),
                         largest_trainable=max([m.d_out for m in targets] + [head], default=0))

    def prepare(self, model, settings, ctx):
        from peft import IA3Config, get_peft_model

        config = IA3Config(
            task_type=ctx.peft_task_type,
            target_modules=settings.target_modules,
            feedforward_modules=settings.feedforward_modules,
        )
        return get_peft_model(model, config)
