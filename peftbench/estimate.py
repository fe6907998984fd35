"""The analytic memory model: what a fine-tuning run must hold in PyTorch's allocator at its peak. No torch import.

Inputs are an architecture (read from a Hugging Face config dict: `arch_from_config`), a method's footprint
(each method module says what it trains, what it adds and which extra activations it saves: `Method.footprint`)
and a workload (batch, sequence length, precision, gradient checkpointing, optimizer, GPUs). Its formulas and their
sources are in docs/memory-model.md; it was checked against the harness's own CPU measurements
(benchmarks/calibrate.py) and published GPU peaks (benchmarks/published.py), results in docs/measurements.md:

    peak = W + S + A + max(Λ, R) + G + X_step + X_tmp              (PEFT: small gradients coexist with A)
    peak = W + S + max(A + max(Λ, R), G + X_step) + X_tmp          (full fine-tuning, one micro-batch per step)
    peak = W + S + G + max(A + max(Λ, R), X_step) + X_tmp          (full fine-tuning with gradient accumulation)

W resident weights (quantized where the method quantizes), S trainable state that lives across steps (adapter
weights, optimizer states), A activations saved for backward (with checkpointing: the block inputs, and R the one
block recomputed at a time in backward), Λ logits and loss buffers, G gradients, X_step
optimizer-step temporaries, X_tmp transient buffers (4-bit dequantisation). Gradients of a full fine-tune fill
up while activations drain during backward, so the two sides of the max never coexist in full. The CUDA
context (kernels, cuBLAS workspace) is outside PyTorch's allocator: it is reported apart, never in `peak`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .arch import Arch, Footprint, arch_from_config

GIB = 2**30
MIB = 2**20

# The suite's precision names (suite.Precision) plus pure fp16: weights and activations in 16 bits (bf16, fp16), or
# fp32 weights with 16-bit autocast (bf16-mixed, fp16-mixed: the same memory).
Precision = Literal["fp32", "bf16", "fp16", "bf16-mixed", "fp16-mixed"]
Optimizer = Literal["adamw", "adamw8bit", "paged_adamw8bit", "sgd"]
Strategy = Literal["ddp", "zero2", "zero3", "fsdp"]
Attention = Literal["sdpa", "eager"]
AdapterDtype = Literal["fp32", "model"]
Loss = Literal["hf", "chunked"]
PRECISIONS, OPTIMIZERS, STRATEGIES = get_args(Precision), get_args(Optimizer), get_args(Strategy)
ATTENTIONS, ADAPTER_DTYPES, LOSSES = get_args(Attention), get_args(AdapterDtype), get_args(Loss)

# bitsandbytes NF4 with double quantization: 4-bit codes, an 8-bit absmax per block of 64 weights, and an fp32
# absmax per 256 of those blocks (bitsandbytes functional.quantize_4bit, compress_statistics=True).
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# CUDA context + cuBLAS workspace with lazy module loading (CUDA >= 11.7): invisible to torch's allocator
# statistics, visible to nvidia-smi. Published figures range from 0.3 to 2 GiB (docs/memory-model.md).
CUDA_CONTEXT_GIB = 0.75


@dataclass(frozen=True)
class Workload:
    batch: int = 1
    seq_len: int = 512
    precision: Precision = "bf16"
    grad_ckpt: bool = False
    optimizer: Optimizer = "adamw"
    gpus: int = 1
    strategy: Strategy = "ddp"
    device: Literal["cuda", "cpu"] = "cuda"
    packed: bool = False  # sequences packed without padding: no attention mask (see `estimate`)
    grad_accum: int = 1  # micro-batches per optimizer step: from the second, the summed gradients stay allocated
    attention: Attention = "sdpa"  # eager attention saves its probabilities (seq x seq per head)
    adapter_dtype: AdapterDtype = "fp32"  # peft's autocast_adapter_dtype=True keeps adapters in fp32
    loss: Loss = "hf"  # transformers' fp32 cross-entropy, or a chunked 16-bit one
    optimizer_impl: Literal["foreach", "fused", "forloop"] | None = None  # torch AdamW's; None: the device default
    bnb_saves_4bit_inputs: bool = False  # bitsandbytes < 0.43.2 saved the input of every 4-bit linear (PR #1270)
    # peftbench's AdamW on 16-bit trainable weights: optimi's, with a 16-bit Kahan compensation buffer per parameter
    # (training.make_optimizer); False for a plain torch AdamW on 16-bit weights (what published stacks run)
    kahan_sum: bool = True

    def __post_init__(self):
        for name, allowed in (("precision", PRECISIONS), ("optimizer", OPTIMIZERS), ("strategy", STRATEGIES),
                              ("attention", ATTENTIONS), ("adapter_dtype", ADAPTER_DTYPES), ("loss", LOSSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Workload.{name}={getattr(self, name)!r}: one of {', '.join(allowed)}")

    @property
    def storage(self) -> Literal["fp32", "bf16", "fp16", "mixed"]:
        """How the precision stores tensors: the two mixed precisions take the same memory."""
        return "mixed" if self.precision.endswith("-mixed") else self.precision


# What each breakdown entry holds, for the tables and docs/memory-model.md.
COMPONENTS = {
    "weights": "model weights (QLoRA: NF4 block linears, 8-bit LoRA: int8, + the rest in the load dtype)",
    "adapters": "weights the method adds (fp32 unless --adapter-dtype model)",
    "gradients": "gradients of the trainable parameters",
    "optimizer_states": "optimizer state (AdamW: two moments per trainable parameter, + a Kahan compensation for "
                        "16-bit weights; AdaLoRA's scores)",
    "optimizer_step_temp": "temporaries of the optimizer step",
    "activations": "tensors saved for backward",
    "recompute": "with checkpointing: one block's activations, recomputed in backward",
    "logits_loss": "logits, log-softmax and their gradients (causal LM loss)",
    "transient": "short-lived buffers (4-bit dequantisation, DoRA's weight norms)",
}
# How the components combine into the peak (Estimate.formula says which applied).
FORMULAS = {
    "peft": "the sum of every component but max(logits_loss, recompute): adapter gradients coexist with the "
            "activations; a recomputed block comes after the loss buffers are freed",
    "full": "weights + optimizer_states + max(activations + max(logits_loss, recompute), gradients + "
            "optimizer_step_temp): gradients fill up as activations drain",
    "full_accum": "weights + optimizer_states + gradients + max(activations + max(logits_loss, recompute), "
                  "optimizer_step_temp): accumulated gradients stay through each micro-batch",
}


@dataclass
class Estimate:
    trainable_params: int
    total_params: int
    peak_bytes: float
    cuda_context_bytes: float
    breakdown: dict[str, float]  # bytes per component
    notes: list[str] = field(default_factory=list)
    formula: str = "peft"  # a key of FORMULAS

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MIB

    def to_json(self) -> dict[str, Any]:
        return {
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "peak_gib": round(self.peak_gib, 4),
            "cuda_context_gib": round(self.cuda_context_bytes / GIB, 4),
            "breakdown": {k: round(v / GIB, 4) for k, v in self.breakdown.items()},
            "peak_is": FORMULAS[self.formula],
            "notes": self.notes,
        }


# ---- the model ------------------------------------------------------------------------------------------------

# Bytes per token per vocabulary entry of the causal-LM loss at its peak (start of backward): transformers'
# ForCausalLMLoss up-casts logits to fp32 and saves the fp32 log-softmax; backward adds its gradient and the
# logits' gradient. Measured on CPU in fp32 (benchmarks/calibrate.py): see LOGIT_BYTES use below.
LOGIT_BYTES = {"fp32": 12.0, "bf16": 14.0, "fp16": 14.0, "mixed": 14.0}
# A chunked 16-bit cross-entropy (litgpt's chunked_cross_entropy, torchtune's chunked CE and similar): the 16-bit
# logits and the 16-bit log-softmax of each chunk are kept for backward, never an fp32 copy of the whole.
CHUNKED_LOGIT_BYTES = 4.0


def _bytes(precision: str) -> tuple[int, int]:
    """(weight bytes of non-quantized base parameters, activation bytes)."""
    weight = 4 if precision in ("fp32", "mixed") else 2
    act = 4 if precision == "fp32" else 2
    return weight, act


def layer_activation_bytes(arch: Arch, fp: Footprint, ab: int, s_kv: int, kv_width: int, mask_b: int,
                           w: Workload) -> float:
    """Bytes saved for backward per token per block (no checkpointing): base ops, full-FT extras, method extras.

    kv_width: the width of the keys and values the attention kernel saves (the query width when transformers
    expands grouped KV heads with repeat_kv, see `estimate`). mask_b: bytes per element of a dropout mask.
    """
    h, i, a = arch.hidden, arch.intermediate, arch.heads
    norm_in = 4 * h if arch.norm == "rms" else ab * h  # HF RMSNorm up-casts its input to fp32 and saves it
    total = arch.norms_per_layer * norm_in
    total += ab * (2 * arch.q_dim + 2 * kv_width) + 4 * a  # attention kernel: q, k, v, output, logsumexp
    total += ab * i * (3 if arch.mlp == "gated" else arch.act_saved)  # SwiGLU: act input, act output, up output
    if arch.dropout:  # dropout masks and dropped outputs after the attention and MLP outputs
        total += 2 * (mask_b + ab) * h
    if w.attention == "eager":  # the softmax probabilities (fp32 under autocast, plus the 16-bit copy for P @ V)
        probs = 4 + ab if w.storage == "mixed" else ab
        total += a * s_kv * (probs + (mask_b + ab if arch.dropout else 0))
    if fp.full:  # inputs of every trainable linear (q/k/v share one) and the normalised input of each norm weight
        total += ab * (h + arch.q_dim + (h if arch.mlp == "gated" else 0) + i) + arch.norms_per_layer * ab * h
    adapter_b = 4 if w.adapter_dtype == "fp32" else ab  # what peft casts an adapter's input to
    for extra in fp.saved:
        total += extra.elements * {"act": ab, "fp32": adapter_b, "mask": mask_b}[extra.kind]
    # bitsandbytes' 8-bit matmuls keep their input for backward (MatMul8bitLt / MatMul8bitFp), as MatMul4Bit did
    # before 0.43.2: the inputs of q/k/v (one shared tensor), o, gate/up (shared) and down.
    if fp.quantized and (fp.int8 or w.bnb_saves_4bit_inputs):
        total += ab * (h + arch.q_dim + (h if arch.mlp == "gated" else 0) + i)
    return total


def estimate(arch: Arch, fp: Footprint, w: Workload) -> Estimate:
    """The predicted peak of PyTorch's allocator for one training step of `fp` on `arch` under `w`."""
    wb, ab = _bytes(w.storage)
    notes: list[str] = list(fp.notes)
    seq = w.seq_len + fp.extra_positions
    tokens = w.batch * seq
    total_params = arch.total_params + fp.added
    # Weights: quantized block linears + the rest in the load dtype (peftbench skips the fp32 up-cast of peft's
    # prepare_model_for_kbit_training: methods/lora.py quantized_lora).
    if fp.quantized and fp.int8:  # int8 codes + one fp32 scale per output row
        scales = arch.layers * sum(m.d_out for m in arch.block) * 4
        weights = arch.block_linear_params + scales + (arch.total_params - arch.block_linear_params) * wb
    elif fp.quantized:
        weights = arch.block_linear_params * NF4_DQ_BYTES + (arch.total_params - arch.block_linear_params) * wb
    else:
        weights = arch.total_params * wb
    # peft keeps adapter weights in fp32 (autocast_adapter_dtype=True) unless told to keep the model's dtype
    adapter_b = 4 if w.adapter_dtype == "fp32" or w.storage in ("fp32", "mixed") else 2
    adapters = fp.added * adapter_b
    # Trainable state: gradient and optimizer bytes per trainable parameter, in the trainable parameter's dtype.
    pb = (wb if w.storage != "mixed" else 4) if fp.full or fp.own_weights else adapter_b
    grad_b = pb
    opt_b = {"adamw": 2 * pb, "adamw8bit": 2.0 + 8 / 256, "paged_adamw8bit": 2.0 + 8 / 256, "sgd": pb}[w.optimizer]
    kahan = w.optimizer == "adamw" and w.kahan_sum and pb == 2
    if kahan:  # 16-bit trainable weights: the Kahan compensation, one more 16-bit tensor per parameter
        opt_b += pb
        notes.append("16-bit trainable weights: AdamW with Kahan summation (optimi), +2 bytes/param of compensation")
    if w.optimizer == "paged_adamw8bit":
        notes.append("paged optimizer states live in CUDA unified memory, outside the allocator: not in the peak")
        opt_b = 0.0
    opt_states = fp.trainable * opt_b + fp.extra_state * 4
    grads = fp.trainable * grad_b
    # Optimizer-step temporaries: torch's foreach AdamW (the CUDA default) makes one state-sized temporary for all
    # tensors at once; the single-tensor loop (the CPU default) two of the largest tensor at a time (measured on
    # CPU: benchmarks/calibrate.py); the fused kernel none.
    impl = w.optimizer_impl or ("foreach" if w.device == "cuda" else "forloop")
    if w.optimizer != "adamw" or impl == "fused":
        step_tmp = 0.0
    elif kahan:  # optimi: a fused Triton kernel on CUDA; on CPU a loop with one sqrt temporary of a tensor
        step_tmp = 0.0 if w.device == "cuda" else fp.largest_trainable * pb
    elif impl == "foreach":
        step_tmp = fp.trainable * pb
    else:
        step_tmp = 2 * fp.largest_trainable * pb
    # Activations: every block's saved tensors, or with checkpointing each block's input plus one block recomputed.
    s_kv = seq + fp.kv_prefix
    # transformers' SDPA path runs grouped KV heads natively only without an attention mask; padded batches carry
    # one, so K and V are expanded to every query head (repeat_kv) and saved at the query width
    # (transformers/integrations/sdpa_attention.py, use_gqa_in_sdpa). Packed batches pass no mask.
    kv_width = arch.kv_dim if w.packed else arch.q_dim
    # Dropout keeps a 1-byte mask on CUDA (fused native_dropout); on CPU it saves its scaled noise tensor, in the
    # activation dtype (aten dropout's non-fused path). Measured: benchmarks/calibrate.py.
    mask_b = 1 if w.device == "cuda" else ab
    per_layer = layer_activation_bytes(arch, fp, ab, s_kv, kv_width, mask_b, w)
    layer_input = ab * arch.hidden if w.storage != "mixed" else 4 * arch.hidden
    # With checkpointing each block keeps only its input; in backward one block at a time is recomputed, after the
    # loss buffers are gone, so the recomputed block and the loss buffers never coexist (measured on CPU:
    # benchmarks/calibrate.py; summing them over-counted by one block).
    if w.grad_ckpt:
        activations, recompute = tokens * arch.layers * layer_input, tokens * per_layer
    else:
        activations, recompute = tokens * arch.layers * per_layer, 0.0
    activations += tokens * (4 * arch.hidden if arch.norm == "rms" else ab * arch.hidden)  # final norm input
    if fp.kv_prefix:
        activations += w.batch * arch.layers * 2 * fp.kv_prefix * arch.kv_dim * ab  # the prefix keys/values
    blocks_alive = 1 if w.grad_ckpt else arch.layers  # per-block terms: every block, or one under checkpointing
    if fp.weight_copies and wb == 2:  # fp32 copies of 16-bit weights kept for backward
        activations += fp.weight_copies * 4 * blocks_alive
    activations += fp.saved_per_block * adapter_b * blocks_alive
    if w.storage == "mixed":  # autocast's 16-bit copies of the linear weights, saved from forward to backward
        activations += 2 * arch.block_linear_params
        notes.append("mixed precision: 16-bit copies of the linear weights held from forward to backward")
    logit_b = LOGIT_BYTES[w.storage] if w.loss == "hf" else CHUNKED_LOGIT_BYTES
    logits = tokens * arch.vocab * logit_b if arch.head == "lm" else 0.0
    # 4-bit and 8-bit: each linear is dequantized to the compute dtype for its matmul, one at a time.
    dequant = max(m.d_in * m.d_out for m in arch.block) * (4 if w.storage == "fp32" else 2) if fp.quantized else 0.0
    transient = max(dequant, 4.0 * fp.transient_fp32)

    breakdown = {"weights": weights, "adapters": adapters, "gradients": grads, "optimizer_states": opt_states,
                 "optimizer_step_temp": step_tmp, "activations": activations, "recompute": recompute,
                 "logits_loss": logits,
                 "transient": transient}
    if w.gpus > 1 and w.strategy != "ddp":
        shard = w.gpus
        breakdown["gradients"] = grads / shard
        breakdown["optimizer_states"] = opt_states / shard
        breakdown["optimizer_step_temp"] = step_tmp / shard
        if w.strategy in ("zero3", "fsdp"):  # the frozen base of a PEFT method is sharded too
            per_block = weights / arch.layers if arch.layers else 0
            breakdown["weights"] = weights / shard + 2 * per_block  # own shard + gathered block and its prefetch
        notes.append(f"{w.strategy} over {w.gpus} GPUs: per-GPU figure")
    elif w.gpus > 1:
        breakdown["gradients"] = grads * 2  # DDP keeps gradient buckets beside the .grad tensors
        notes.append(f"DDP over {w.gpus} GPUs: full replica per GPU plus gradient buckets; per-GPU figure")
    b = breakdown
    formula = "full_accum" if fp.full and w.grad_accum > 1 else "full" if fp.full else "peft"
    saved = b["activations"] + max(b["logits_loss"], b["recompute"])
    if formula == "full_accum":  # the gradients summed so far are live through every later micro-batch
        during = b["gradients"] + max(saved, b["optimizer_step_temp"])
    elif formula == "full":
        during = max(saved, b["gradients"] + b["optimizer_step_temp"])
    else:
        during = saved + b["gradients"] + b["optimizer_step_temp"]
    peak = b["weights"] + b["adapters"] + b["optimizer_states"] + during + b["transient"]
    ctx = CUDA_CONTEXT_GIB * GIB if w.device == "cuda" else 0.0
    return Estimate(fp.trainable, total_params, peak, ctx, breakdown, notes, formula)


# ---- glue for suites and records ------------------------------------------------------------------------------

def workload_for_suite(suite: dict[str, Any], device: str | None = None) -> Workload:
    t = suite["training"]
    dev = device or ("cuda" if t.get("device") == "cuda" else "cpu" if t.get("device") == "cpu" else "cuda")
    return Workload(batch=t["batch_size"], seq_len=t["max_length"], precision=t["precision"],
                    grad_ckpt=bool(t.get("gradient_checkpointing")), optimizer="adamw", device=dev)


def estimate_run(suite: dict[str, Any], method: str, settings: dict[str, Any], config: dict[str, Any] | None = None,
                 device: str | None = None, spread: tuple[int, str] = (1, "ddp")) -> Estimate:
    """The estimate for one run of a resolved suite (as dumped to JSON). `config` defaults to resolving
    suite.model; `device` (cuda/cpu) defaults to the suite's training.device, auto counting as cuda. A run whose
    settings have a `launch` over several processes gets the per-process figure of its strategy; `spread`
    ((processes, strategy): plan --gpus --strategy) stands in for the runs without one."""
    from . import catalog
    from . import methods as registry

    model = suite["model"]
    if config is None:
        config = catalog.resolve(model["name"], model.get("config_overrides"), model.get("revision")).config
    arch = arch_from_config(config, model["task"], model.get("num_labels") or 2)
    from dataclasses import replace

    m = registry.get(method)
    validated = m.Settings.model_validate(settings)
    w = workload_for_suite(suite, device)
    w = replace(w, grad_ckpt=m.gradient_checkpointing(validated, w.grad_ckpt))
    gpus, strategy = (validated.launch.processes, validated.launch.strategy) if validated.launch else spread
    if gpus > 1:  # the per-process figure
        w = replace(w, gpus=gpus, strategy=strategy)
    return estimate(arch, m.footprint(arch, validated), w)
