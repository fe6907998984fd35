"""Model architectures as the memory model sees them, and what a method does to them. No torch import.

`Arch` holds the shapes of one model and task (read from a Hugging Face config dict by `arch_from_config`);
`Footprint` is what a method trains, adds and saves on an `Arch` (each method module computes its own, in
`Method.footprint`); `Saved` is one extra activation a method keeps for backward. peftbench/estimate.py turns
an Arch, a Footprint and a workload into a predicted peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import PeftbenchError

# ---- architecture ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Linear:
    """One nn.Linear: its module path (inside a block, or from the model root for heads) and shape."""

    path: str
    d_in: int
    d_out: int
    bias: bool = False

    @property
    def params(self) -> int:
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)

    def matches(self, target: str) -> bool:
        """peft's rule for a target module name: equal to, or a dotted suffix of, the module's name."""
        return ("." + self.path).endswith("." + target)


@dataclass(frozen=True)
class Arch:
    """The shapes the memory model needs, for one model and task."""

    model_type: str
    task: str  # a registered task kind (peftbench/tasks/)
    head: Literal["lm", "classifier"]  # the task's head: over the vocabulary, or a new classifier
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    block: tuple[Linear, ...]  # the linears of one block
    heads_out: tuple[Linear, ...]  # linears outside the blocks: lm_head, score, pooler, classifier
    other_params: int  # embeddings, norms, position embeddings: parameters that are not in a Linear
    norms_per_layer: int
    norm: Literal["rms", "layer"]
    mlp: Literal["gated", "plain"]
    act_saved: int  # elements the MLP activation function saves per intermediate unit (gelu_new: 4, silu/gelu: 1)
    dropout: bool  # dropout active in training (hidden and attention probabilities)
    output_layer: str | None  # the head peft's all-linear leaves out (lm_head / score / classifier)
    lora_defaults: tuple[str, ...] = ()
    ia3_defaults: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # target modules, feed-forward modules

    @property
    def total_params(self) -> int:
        heads = sum(m.params for m in self.heads_out)
        return self.layers * sum(m.params for m in self.block) + heads + self.other_params

    @property
    def block_linear_params(self) -> int:
        return self.layers * sum(m.params for m in self.block)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    def targets(self, names: list[str] | str | None, defaults: tuple[str, ...]) -> list[Linear]:
        """The linears a peft `target_modules` value selects: block linears (once per block) and heads. Names that
        select nothing are a user error (peft would refuse them once the model is loaded)."""
        if names == "all-linear":
            return [*self.block, *(m for m in self.heads_out if m.path != self.output_layer)]
        chosen = list(defaults) if names is None else list(names)
        found = [m for m in (*self.block, *self.heads_out) if any(m.matches(t) for t in chosen)]
        if names is not None and not found:
            known = ", ".join(dict.fromkeys(m.path.rsplit(".", 1)[-1] for m in (*self.block, *self.heads_out)))
            raise NoMatchingTargets(f"target_modules {', '.join(chosen)} match no linear layer of this "
                                    f"{self.model_type} model (its linear layers: {known}, or all-linear)")
        return found

    def in_block(self, m: Linear) -> bool:
        return m in self.block


class NoMatchingTargets(PeftbenchError):
    """target_modules that select no layer of the architecture."""


class NotApplicable(PeftbenchError):
    """A method with nothing to train on this architecture (BitFit on a model without biases, as Llama)."""


# peft's default targets (TRANSFORMERS_MODELS_TO_{LORA,IA3}_TARGET_MODULES_MAPPING, peft 0.21), copied because
# importing peft imports torch; tests/test_estimate_exact.py checks them against peft itself.
LLAMA_LIKE = {"llama", "mistral", "qwen2", "gemma", "gemma2"}
LORA_DEFAULTS = {**{t: ("q_proj", "v_proj") for t in LLAMA_LIKE}, "phi": ("q_proj", "v_proj", "fc1", "fc2"),
                  "bert": ("query", "value")}
IA3_DEFAULTS = {
    "llama": (("k_proj", "v_proj", "down_proj"), ("down_proj",)),
    "mistral": (("k_proj", "v_proj", "down_proj"), ("down_proj",)),
    "qwen2": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "gemma": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "gemma2": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "phi": (("q_proj", "v_proj", "fc2"), ("fc2",)),
    "bert": (("key", "value", "output.dense"), ("output.dense",)),
}
SUPPORTED_MODEL_TYPES = sorted(LORA_DEFAULTS)


def arch_from_config(cfg: dict[str, Any], task: str | None = None, num_labels: int = 2) -> Arch:
    """An Arch from a Hugging Face config dict (catalog entry, local config.json, built-in model), with the head
    the task kind puts on it."""
    from . import tasks

    task = task or tasks.DEFAULT
    head = tasks.get(task).head
    mt = cfg.get("model_type")
    if mt not in LORA_DEFAULTS:
        raise PeftbenchError(f"no memory model for model_type {mt!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    try:
        h, L, a = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        i, V = int(cfg["intermediate_size"]), int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise PeftbenchError(f"model config lacks a usable {err} field") from None
    k = int(cfg.get("num_key_value_heads") or a)
    d = int(cfg.get("head_dim") or h // a)
    common = dict(model_type=mt, task=task, head=head, layers=L, hidden=h, intermediate=i, heads=a, kv_heads=k,
                  head_dim=d, vocab=V, lora_defaults=LORA_DEFAULTS[mt], ia3_defaults=IA3_DEFAULTS[mt])
    tied = bool(cfg.get("tie_word_embeddings", mt in ("gemma", "gemma2") or mt == "bert"))
    if mt == "bert":
        if head != "classifier":
            raise PeftbenchError(f"bert models are supported with a classification head only, not for {task}")
        block = (Linear("attention.self.query", h, a * d, True), Linear("attention.self.key", h, a * d, True),
                 Linear("attention.self.value", h, a * d, True), Linear("attention.output.dense", a * d, h, True),
                 Linear("intermediate.dense", h, i, True), Linear("output.dense", i, h, True))
        heads = (Linear("pooler.dense", h, h, True), Linear("classifier", h, num_labels, True))
        embeddings = (V + int(cfg.get("max_position_embeddings", 512)) + int(cfg.get("type_vocab_size", 2))) * h + 2 * h
        return Arch(**common, block=block, heads_out=heads, other_params=embeddings + L * 2 * 2 * h, norms_per_layer=2,
                    norm="layer", mlp="plain", act_saved=1, dropout=float(cfg.get("hidden_dropout_prob", 0.1)) > 0,
                    output_layer="classifier")
    if mt == "phi":
        block = (Linear("self_attn.q_proj", h, a * d, True), Linear("self_attn.k_proj", h, k * d, True),
                 Linear("self_attn.v_proj", h, k * d, True), Linear("self_attn.dense", a * d, h, True),
                 Linear("mlp.fc1", h, i, True), Linear("mlp.fc2", i, h, True))
        norms, norm_params, act_saved = 1, 2 * h, 4 if cfg.get("hidden_act", "gelu_new") == "gelu_new" else 1
        dropout = float(cfg.get("resid_pdrop", 0) or 0) > 0 or float(cfg.get("attention_dropout", 0) or 0) > 0
        norm_kind, mlp_kind, lm_bias = "layer", "plain", True
    else:
        attn_bias = bool(cfg.get("attention_bias", False)) or mt == "qwen2"
        mlp_bias = bool(cfg.get("mlp_bias", False))
        block = (Linear("self_attn.q_proj", h, a * d, attn_bias), Linear("self_attn.k_proj", h, k * d, attn_bias),
                 Linear("self_attn.v_proj", h, k * d, attn_bias),
                 Linear("self_attn.o_proj", a * d, h, bool(cfg.get("attention_bias", False))),
                 Linear("mlp.gate_proj", h, i, mlp_bias), Linear("mlp.up_proj", h, i, mlp_bias),
                 Linear("mlp.down_proj", i, h, mlp_bias))
        norms = 4 if mt == "gemma2" else 2
        norm_params, act_saved, dropout = norms * h, 1, float(cfg.get("attention_dropout", 0) or 0) > 0
        norm_kind, mlp_kind, lm_bias = "rms", "gated", False
    final_norm = 2 * h if norm_kind == "layer" else h
    other = V * h + L * norm_params + final_norm
    if head == "lm":
        heads: tuple[Linear, ...] = (Linear("lm_head", h, V, lm_bias),)
        if tied:  # the head's weight is the embedding; only a bias would be its own
            other -= V * h
        output = "lm_head"
    else:
        heads, output = (Linear("score", h, num_labels, False),), "score"
    return Arch(**common, block=block, heads_out=heads, other_params=other, norms_per_layer=norms, norm=norm_kind,
                mlp=mlp_kind, act_saved=act_saved, dropout=dropout, output_layer=output)



# ---- what a method changes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """Extra activation memory a method keeps per token per block: `elements` of a given storage kind."""

    elements: int
    kind: Literal["act", "fp32", "mask"]  # activation dtype, fp32 (peft keeps adapters in fp32), dropout mask


@dataclass(frozen=True)
class Footprint:
    """What a method does to the memory of a model (each method module computes its own)."""

    trainable: int  # trainable parameters (analytic count; tests check it against peft on the meta device)
    added: int  # parameters the method adds (adapters, prompts, copies of heads); 0 for full fine-tuning
    full: bool = False  # every base weight is trained (gradients and optimizer state for all of them)
    own_weights: bool = False  # it trains some of the base's own tensors (BitFit): their gradients and optimizer
    # state are in the weights' dtype, as full fine-tuning's, not in fp32 as peft's adapters
    quantized: bool = False  # block linears stored in 4-bit NF4 (double quantization); the rest in fp32
    int8: bool = False  # with `quantized`: LLM.int8 8-bit block linears instead of NF4
    saved: tuple[Saved, ...] = ()  # extra saved activations per token per block
    extra_positions: int = 0  # tokens prepended to every sequence (prompt tuning): activations and logits grow
    kv_prefix: int = 0  # key/value positions prepended in every block (prefix tuning)
    largest_trainable: int = 0  # elements of the largest trainable tensor (CPU optimizer temporaries)
    weight_copies: int = 0  # elements per block of frozen weights cast to fp32 and saved for backward (16-bit bases)
    transient_fp32: int = 0  # elements of the largest fp32 temporary the method makes in a step (DoRA's norms)
    saved_per_block: int = 0  # elements per block saved for backward in the adapter dtype (LoHa/LoKr's full update)
    extra_state: int = 0  # fp32 elements of state the method keeps across steps (AdaLoRA's importance scores)
    notes: tuple[str, ...] = ()  # what the user should know about these settings on this architecture
