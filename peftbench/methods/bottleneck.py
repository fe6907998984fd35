"""Bottleneck adapters (Houlsby et al. 2019; the one-adapter variant of Pfeiffer et al. 2021): a small trained
down-projection, nonlinearity and up-projection added to the output of sub-layers of every block, the base frozen.

Written here rather than with AdapterHub's `adapters` library: its newest release (1.3.0) requires
transformers ~=4.57, and peftbench locks transformers 5 (peft has no bottleneck adapters). The module is small:
each adapter is an `nn.Sequential(Linear(h, m), activation, Linear(m, h))` attached to the sub-layer's output
projection (the attention output and the feed-forward output, as in Houlsby's Figure 2; `pfeiffer`: the
feed-forward one only) as a child module named `bottleneck`, and a forward hook adds its output to the
projection's: y + up(act(down(y))), before the residual connection, as the paper places it. m = hidden //
reduction_factor (AdapterHub's rule). The up-projection starts at zero, so the adapted model starts as the base
(Houlsby's near-identity initialisation; LoRA's B = 0). Adapters are kept in fp32, as peft keeps its adapters
(autocast_adapter_dtype). A new classification head is trained in place. The nonlinearity cannot be folded into
the base weights: not mergeable, two small matmuls per adapter at inference.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from ..arch import Footprint, NotApplicable, Saved
from . import register
from .base import Advice, Method, MethodSettings, Traits

# Per architecture: the output projections of a block's attention and feed-forward sub-layers (paths in a block,
# as arch.py names them); Houlsby adapts both, Pfeiffer the feed-forward one.
SITES = {"bert": ("attention.output.dense", "output.dense"), "phi": ("self_attn.dense", "mlp.fc2"),
         **{t: ("self_attn.o_proj", "mlp.down_proj") for t in ("llama", "mistral", "qwen2", "gemma", "gemma2")}}
DEFAULT_ACTIVATION = {"houlsby": "silu", "pfeiffer": "relu"}  # AdapterHub's defaults ("swish" is SiLU)
HEAD_NAMES = ("classifier", "score")


class BottleneckSettings(MethodSettings):
    config: Literal["houlsby", "pfeiffer"] = Field("houlsby", description="houlsby: after attention and "
                                                   "feed-forward; pfeiffer: after feed-forward only")
    reduction_factor: PositiveInt = Field(16, description="bottleneck width = hidden size // reduction_factor")
    activation: Literal["relu", "silu", "gelu"] | None = Field(None, description="default: silu (houlsby), relu "
                                                                                 "(pfeiffer)")


def sites(model_type: str, settings: BottleneckSettings) -> tuple[str, ...]:
    if model_type not in SITES:
        raise NotApplicable(f"bottleneck: no adapter sites known for model_type {model_type!r}")
    both = SITES[model_type]
    return both if settings.config == "houlsby" else both[1:]


def width(hidden: int, settings: BottleneckSettings) -> int:
    return max(1, hidden // settings.reduction_factor)


def _add_bottleneck(module, args, output):
    """The forward hook: the projection's output plus its adapter's, computed in the adapter's dtype."""
    adapter = module.bottleneck
    return output + adapter(output.to(adapter[0].weight.dtype)).to(output.dtype)


@register
class Bottleneck(Method):
    name = "bottleneck"
    summary = "bottleneck adapters (Houlsby): small MLPs added after attention and feed-forward"
    traits = Traits(mergeable=False, quantized_base=False)
    family = "adapter"
    Settings = BottleneckSettings
    test_settings = ({}, {"config": "pfeiffer", "reduction_factor": 8})
    default_learning_rate = 1e-3
    advice = Advice(
        prior=-0.5,
        why="within 0.4 GLUE points of full fine-tuning with BERT-large at 3.6% of its weights (Houlsby et al. "
            "2019); not mergeable: two small matmuls per adapter at inference",
        learning_rate=3e-4,  # Houlsby et al. searched 3e-5, 3e-4 and 3e-3
    )

    def footprint(self, arch, settings):
        """Per adapter 2*h*m + m + h parameters (two linears with biases), once or twice per block. Saved per token
        per adapter: its fp32 input (h), and the bottleneck before and after the activation (2m)."""
        chosen = sites(arch.model_type, settings)
        missing = [s for s in chosen if s not in {m.path for m in arch.block}]
        if missing:
            raise NotApplicable(f"bottleneck: {arch.model_type} blocks have no {', '.join(missing)}")
        h, m = arch.hidden, width(arch.hidden, settings)
        params = arch.layers * len(chosen) * (2 * h * m + m + h)
        head = sum(x.params for x in arch.heads_out if x.path == arch.output_layer) if arch.head == "classifier" else 0
        saved = tuple(s for _ in chosen for s in (Saved(h, "fp32"), Saved(2 * m, "fp32")))
        return Footprint(trainable=params + head, added=params, saved=saved, largest_trainable=max(h * m, head))

    def prepare(self, model, settings, ctx):
        import re

        import torch

        chosen = sites(model.config.model_type, settings)
        at = re.compile(r"\.\d+\.(" + "|".join(map(re.escape, chosen)) + r")$")  # inside a numbered block
        act = {"relu": torch.nn.ReLU, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU}[
            settings.activation or DEFAULT_ACTIVATION[settings.config]]
        for p in model.parameters():
            p.requires_grad_(False)
        for name, module in list(model.named_modules()):
            if not at.search(name):
                continue
            h, device = module.out_features, module.weight.device
            adapter = torch.nn.Sequential(torch.nn.Linear(h, width(h, settings), device=device), act(),
                                          torch.nn.Linear(width(h, settings), h, device=device))
            torch.nn.init.zeros_(adapter[2].weight)
            torch.nn.init.zeros_(adapter[2].bias)
            module.add_module("bottleneck", adapter)
            module.register_forward_hook(_add_bottleneck)
        if ctx.task.head == "classifier":
            for head in HEAD_NAMES:
                if hasattr(model, head):
                    getattr(model, head).requires_grad_(True)
        return model

    def save(self, model, out):
        """The adapters and the trained head, as safetensors."""
        from safetensors.torch import save_file

        from ..measure import directory_size_mb

        out.mkdir(parents=True, exist_ok=True)
        trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(out / "bottleneck.safetensors"))
        return directory_size_mb(out), "adapters and head (safetensors)"
