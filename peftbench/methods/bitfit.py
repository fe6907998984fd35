"""BitFit (Ben Zaken et al. 2022): train only the bias terms of the base model (and a classification head).

Written here, not through peft: peft has no BitFit (its closest, LN tuning, trains copies of the norm layers).
BitFit trains the base's own tensors, so nothing is added, the trained model needs no merge, and what a run saves
is the biases alone. "Bias terms" are the paper's: every parameter named `bias`, the linear layers' and the
LayerNorms' (its Table 1 lists b_q, b_k, b_v, b_m1, b_LN1, b_m2, b_m3, b_LN2). A new classification head has no
pretrained values, so it is trained whole, as in the paper's GLUE runs. Llama, Mistral and Gemma have no biases
at all: there BitFit has nothing to train, and the run is refused before it starts (ln-tuning is the selective
method for them).
"""

from __future__ import annotations

from ..arch import Footprint, NotApplicable
from . import register
from .base import Advice, Method, Traits

HEAD_NAMES = ("classifier", "score")  # transformers' sequence-classification heads (peft's modules_to_save too)


def bias_count(arch) -> int:
    """Elements of every bias: the linears' (blocks and heads) and, with LayerNorm, each norm's (the per-block
    ones and one more: BERT's embeddings LayerNorm, phi's final one). RMSNorm has no bias."""
    linear = arch.layers * sum(m.d_out for m in arch.block if m.bias) + sum(m.d_out for m in arch.heads_out if m.bias)
    norms = arch.hidden * (arch.layers * arch.norms_per_layer + 1) if arch.norm == "layer" else 0
    return linear + norms


def no_biases(name: str) -> NotApplicable:
    return NotApplicable(f"bitfit: this {name} model has no bias terms, so BitFit has nothing to train (use "
                         "ln-tuning, the selective method for models without biases)")


@register
class BitFit(Method):
    name = "bitfit"
    summary = "BitFit: train only the bias terms"
    traits = Traits(mergeable=True, quantized_base=False)  # the trained biases are the model's own
    family = "selective"
    default_learning_rate = 1e-3  # the paper's search space: 1e-4 to 1e-3 (its Appendix), the top for short runs
    advice = Advice(
        prior=-1.0,
        why="trains only the bias terms (0.05-0.1% of the weights): close to full fine-tuning on GLUE with BERT at "
            "small and medium data sizes (Ben Zaken et al. 2022, Table 2), behind it with more data; nothing to "
            "train on models without biases (Llama, Mistral, Gemma)",
        learning_rate=1e-3,
    )

    def footprint(self, arch, settings):
        """Every bias, plus a classification head's weight (its bias is among the biases). Added: nothing. Saved
        for backward: nothing beyond the frozen model's own (a bias's gradient is the sum of its output's)."""
        biases = bias_count(arch)
        if not biases:
            raise no_biases(arch.model_type)
        head = [m for m in arch.heads_out if m.path == arch.output_layer] if arch.head == "classifier" else []
        head_weight = sum(m.d_in * m.d_out for m in head)
        largest = max([m.d_out for m in (*arch.block, *arch.heads_out) if m.bias] + [arch.hidden, head_weight])
        return Footprint(trainable=biases + head_weight, added=0, own_weights=True, largest_trainable=largest)

    def prepare(self, model, settings, ctx):
        trained = 0
        for name, p in model.named_parameters():
            bias = name.endswith(".bias")
            head = ctx.task.head == "classifier" and name.split(".")[0] in HEAD_NAMES
            p.requires_grad_(bias or head)
            trained += bias
        if not trained:
            raise no_biases(model.config.model_type)
        return model

    def unmergeable_reason(self):
        return "bitfit: the trained biases are the model's own, nothing to merge"

    def save(self, model, out):
        """The trained tensors (biases and head), as safetensors."""
        from safetensors.torch import save_file

        from ..measure import directory_size_mb

        out.mkdir(parents=True, exist_ok=True)
        trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(out / "bitfit.safetensors"))
        return directory_size_mb(out), "trained tensors (safetensors)"
