"""QLoRA (Dettmers et al. 2023): NF4 4-bit base with double quantization, LoRA adapters on top, via bitsandbytes.

bitsandbytes >= 0.46 has a CPU backend, so this runs in the CPU suites too (slowly: dequantisation on the CPU).
"""

from __future__ import annotations

from . import register
from .base import LOW_RANK_OPTIONS, Advice, Method, Traits
from .lora import LoraSettings, expand_ranks, lora_footprint, quantized_lora


@register
class QLora(Method):
    name = "qlora"
    summary = "QLoRA: LoRA on an NF4 double-quantized 4-bit base"
    traits = Traits(mergeable=True, quantized_base=True)  # merging lands in 4-bit weights and changes outputs
    family = "low-rank"
    peft_type = "LORA"
    options = LOW_RANK_OPTIONS
    Settings = LoraSettings
    test_settings = ({"ranks": [16], "target_modules": "all-linear"},)
    default_learning_rate = 5e-4
    advice = Advice(
        prior=-0.3,
        why="matches 16-bit LoRA's quality (Dettmers et al. 2023) but dequantises every linear at every step "
            "(Raschka 2023: 10,060 s vs 6,686 s for LoRA) and merges into 4-bit weights: for when 16 bits do not fit",
        learning_rate=2e-4,
        candidates=tuple({"ranks": [r], "target_modules": "all-linear"} for r in (8, 16, 64, 256)),
        proxy="lora",  # the same adapters; NF4 QLoRA matches 16-bit LoRA (Dettmers et al. 2023)
    )

    def expand(self, settings):
        return expand_ranks(self, settings)

    def rank(self, settings):
        return settings.ranks[0]

    def footprint(self, arch, settings):
        return lora_footprint(arch, settings, quantized=True)

    def load_kwargs(self, settings, ctx):
        from transformers import BitsAndBytesConfig

        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=ctx.compute_dtype,
                llm_int8_skip_modules=ctx.task.unquantized_modules(),
            )
        }

    def prepare(self, model, settings, ctx):
        return quantized_lora(model, settings, ctx)
