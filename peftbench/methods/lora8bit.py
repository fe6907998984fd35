"""LoRA on an 8-bit base (bitsandbytes LLM.int8, Dettmers et al. 2022): the frozen linears stored as int8 with a
scale per row, LoRA adapters on top. Halfway between LoRA on a 16-bit base and QLoRA in memory; bitsandbytes'
CPU backend runs it too (it dequantizes each weight for its matmul)."""

from __future__ import annotations

from . import register
from .base import Traits
from .lora import Lora, lora_footprint, quantized_lora


@register
class Lora8bit(Lora):
    name = "lora8bit"
    summary = "LoRA on an LLM.int8 8-bit base"
    traits = Traits(mergeable=True, quantized_base=True)  # merging lands in 8-bit weights and changes outputs
    advice = None
    test_settings = ({"ranks": [8], "target_modules": "all-linear"},)

    def footprint(self, arch, settings):
        return lora_footprint(arch, settings, int8=True)

    def load_kwargs(self, settings, ctx):
        from transformers import BitsAndBytesConfig

        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_8bit=True,
                llm_int8_skip_modules=ctx.task.unquantized_modules(),
            )
        }

    def prepare(self, model, settings, ctx):
        return quantized_lora(model, settings, ctx)
