"""LoRA on an 8-bit base (bitsandbytes LLM.int8, Dettmers et al. 2022): the frozen linears stored as int8 with a
scale per row, LoRA adapters on top. Halfway between LoRA on a 16-bit base and QLoRA in memory; bitsandbytes'
CPU backend runs it too (it dequantizes each weight for its matmul)."""

from __future__ import annotations

from . import register
from .base import Traits
from .lora import Lora, lora_config, lora_footprint


@register
class Lora8bit(Lora):
    name = "lora8bit"
    summary = "LoRA on an LLM.int8 8-bit base"
    traits = Traits(mergeable=True, quantized_base=True)  # merging lands in 8-bit weights and changes outputs
    advice = None

    def footprint(self, arch, settings):
        return lora_footprint(arch, settings, int8=True)

    def load_kwargs(self, settings, ctx):
        from transformers import BitsAndBytesConfig

        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_8bit=True,
                # the classification head is new and must stay trainable in full precision
                llm_int8_skip_modules=["classifier", "pooler", "score"] if ctx.task == "classification" else None,
            )
        }

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model, prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=ctx.gradient_checkpointing)
        return get_peft_model(model, lora_config(settings, ctx))
