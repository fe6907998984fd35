"""Full fine-tuning: every parameter of the base model is trained (the reference point for the PEFT methods)."""

from __future__ import annotations

from ..arch import Footprint
from . import register
from .base import Advice, Method, Traits


@register
class Full(Method):
    name = "full"
    summary = "full fine-tuning: every weight trainable"
    traits = Traits(mergeable=True, quantized_base=False)  # nothing to merge: the result is the model itself
    family = "full"
    default_learning_rate = 5e-5
    advice = Advice(
        prior=0.0,
        why="the reference: every weight adapts, the most capacity (and the most memory)",
        learning_rate=2e-5,  # torchtune's and Llama recipes' full fine-tuning rates are 1e-5 to 2e-5
    )

    def footprint(self, arch, settings):
        largest = max([m.d_in * m.d_out for m in (*arch.block, *arch.heads_out)] + [arch.vocab * arch.hidden])
        return Footprint(trainable=arch.total_params, added=0, full=True, largest_trainable=largest)

    def prepare(self, model, settings, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def unmergeable_reason(self):
        return "full fine-tuning: the trained model itself, nothing to merge"

    def save(self, model, out):
        """The bytes of the model's tensors, computed rather than written (a checkpoint of every weight)."""
        from ..measure import tensor_bytes_mb

        return tensor_bytes_mb(model), "model tensors (computed)"
