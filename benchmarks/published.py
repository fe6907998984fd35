"""Estimator vs published GPU measurements: compare peftbench's analytic memory model (peftbench/estimate.py) with
the peak-memory figures collected in benchmarks/published_gpu.yaml (HF PEFT MetaMathQA results, LitGPT config-hub
table, lit-gpt resource tables, torchtune QLoRA tutorial, transformers single-GPU docs on bert-large, PEFT README).

Run by hand (not by pytest); no torch, no GPU, no network:

    python benchmarks/published.py                 # table, exclusions, per-record mapping notes, error summary
    python benchmarks/published.py --json          # the same as one JSON document
    python benchmarks/published.py --yaml other.yaml

Every record either becomes estimator inputs (architecture config, method settings, Workload) or is excluded with
the reasons printed. The source's knobs are mapped onto the estimator's, and every mapping that is not one-to-one
is printed beside the record. Comparison basis by what the source measured:

    max_memory_allocated -> estimate.peak
    max_memory_reserved  -> estimate.peak (reserved >= allocated by the caching allocator's slack, so a correct
                            estimate of the allocated peak reads a few % low against it)
    nvml_used            -> estimate.peak + the CUDA context that the same source reports (transformers docs:
                            "GPU memory occupied: 1343 MB" after allocating one tiny tensor)

error % = (estimate - measured) / measured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peftbench import catalog  # noqa: E402
from peftbench import methods as registry  # noqa: E402
from peftbench.arch import arch_from_config  # noqa: E402
from peftbench.errors import PeftbenchError  # noqa: E402
from peftbench.estimate import GIB, MIB, Workload, estimate  # noqa: E402

DEFAULT_YAML = REPO / "benchmarks" / "published_gpu.yaml"

# ---- models the catalog lacks but the estimator can express ------------------------------------------------------

INLINE_CONFIGS: dict[str, dict[str, Any]] = {
    # TinyLlama-1.1B (config.json of TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T)
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": {
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
        "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
    },
    # bert-large-uncased (BertForSequenceClassification, 2 labels)
    "bert-large-uncased": {
        "model_type": "bert", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
        "intermediate_size": 4096, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    },
}
# hub id -> (catalog hub id with the same shapes, why that is the same memory model)
ALIASES = {
    "meta-llama/Meta-Llama-3-8B": (
        "meta-llama/Llama-3.1-8B",
        "Meta-Llama-3-8B mapped to the catalog's Llama-3.1-8B: identical shapes (h 4096, i 14336, 32 layers, 32/8 "
        "heads, vocab 128256, untied); they differ only in RoPE scaling, which holds no memory",
    ),
}
NOT_EXPRESSIBLE = {
    "bigscience/T0_3B": "T0_3B is a T5 encoder-decoder (model_type t5): the estimator has no memory model for it",
}
TASKS = {"bert-large-uncased": ("classification", 2)}  # everything else: causal_lm

# The CUDA context the transformers docs report themselves (perf_train_gpu_one: "GPU memory occupied: 1343 MB"
# after `torch.ones((1, 1)).to("cuda")`; printed as nvml used // 1024**2, so MiB).
NVML_CONTEXT = {"huggingface/transformers": (1343 * MIB, "1343 MiB CUDA context reported by the same doc "
                                                         "(nvml used after one 1x1 tensor)")}

# ---- source knobs -> HF module names ------------------------------------------------------------------------------

LITGPT_NAMES = {  # litgpt's lora_query/key/value/projection/mlp/head switches -> HF module names
    "llama": {"query": ["q_proj"], "key": ["k_proj"], "value": ["v_proj"], "projection": ["o_proj"],
              "mlp": ["gate_proj", "up_proj", "down_proj"], "head": ["lm_head"]},
    "phi": {"query": ["q_proj"], "key": ["k_proj"], "value": ["v_proj"], "projection": ["dense"],
            "mlp": ["fc1", "fc2"], "head": ["lm_head"]},
}
TORCHTUNE_NAMES = {"q_proj": ["q_proj"], "k_proj": ["k_proj"], "v_proj": ["v_proj"], "output_proj": ["o_proj"]}
TORCHTUNE_MLP = ["gate_proj", "up_proj", "down_proj"]  # torchtune w1, w3, w2
# lora_llama2's default lora_dropout in the stored torchtune version we read (models/llama2/_component_builders.py);
# the v0.1 default was not checked. With activation checkpointing it only changes one block's masks (< 0.01 GiB).
TORCHTUNE_DEFAULT_LORA_DROPOUT = 0.0


def stack_of(rec: dict[str, Any]) -> str:
    src = rec["source"]
    repo, path = src.get("repo", ""), src.get("path", "")
    if repo == "huggingface/peft" and "MetaMathQA" in path:
        return "hf-peft-metamathqa"
    if repo == "huggingface/peft":
        return "hf-peft-readme"
    if repo == "huggingface/transformers":
        return "hf-transformers-docs"
    if repo == "Lightning-AI/litgpt":
        return "litgpt-resource-tables-2023" if "resource-tables" in path else "litgpt-config-hub-2024"
    if repo == "pytorch/torchtune":
        return "torchtune"
    return "other"


HF_STACKS = ("hf-peft-metamathqa", "hf-transformers-docs")  # Hugging Face transformers (+ peft) training stacks


# ---- one record -> estimator inputs -------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    stack: str
    method: str
    model: str
    status: str  # included | excluded
    reasons: list[str] = field(default_factory=list)  # why excluded
    mapping: list[str] = field(default_factory=list)  # how the source's knobs were mapped (assumptions)
    config_name: str = ""
    task: str = "causal_lm"
    num_labels: int = 2
    settings: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    measured_kind: str = ""
    measured_bytes: float | None = None
    basis: str = ""
    context_bytes: float = 0.0
    estimate_peak_bytes: float | None = None
    compared_bytes: float | None = None  # estimate on the measured quantity's basis
    error_pct: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)  # bytes
    estimator_notes: list[str] = field(default_factory=list)
    trainable_est: int | None = None
    trainable_published: int | None = None


def _first_float(text: Any) -> float | None:
    m = re.match(r"\s*([0-9]*\.?[0-9]+)", str(text))
    return float(m.group(1)) if m else None


def model_config(rec: dict[str, Any], row: Row) -> dict[str, Any] | None:
    hub = rec["model"]
    if hub in NOT_EXPRESSIBLE:
        row.reasons.append(NOT_EXPRESSIBLE[hub])
        return None
    if hub in INLINE_CONFIGS:
        row.config_name = f"{hub} (config given inline in this script)"
        return INLINE_CONFIGS[hub]
    if hub in ALIASES:
        target, why = ALIASES[hub]
        row.mapping.append(why)
        hub = target
    try:
        spec = catalog.resolve(hub)
    except PeftbenchError as err:
        row.reasons.append(f"model {hub} not expressible: {err}")
        return None
    row.config_name = f"catalog:{spec.name}"
    return spec.config


def precision_of(text: Any, row: Row) -> str | None:
    t = str(text).strip().lower()
    if t.startswith("bf16-true"):
        row.mapping.append("bf16-true (bf16 weights and activations, no fp32 master copy) -> precision bf16")
        return "bf16"
    if t.startswith("fp16-mixed") or t.startswith("bf16-mixed"):
        precision = "fp16-mixed" if t.startswith("fp16") else "bf16-mixed"
        row.mapping.append(f"{precision} (autocast AMP, fp32 master weights) -> precision {precision}")
        return precision
    if t.startswith("fp32"):
        return "fp32"
    row.reasons.append(f"precision {text!r} not stated")
    return None


def optimizer_of(rec: dict[str, Any], row: Row) -> str | None:
    text = str(rec.get("optimizer", "unknown"))
    t = text.lower()
    if t.startswith("unknown"):
        row.reasons.append("optimizer not stated")
        return None
    if "pagedadamw8bit" in t.replace(" ", ""):
        return "paged_adamw8bit"
    if "pagedadamw" in t.replace(" ", ""):
        row.mapping.append(
            "bitsandbytes PagedAdamW is 32-bit (optim_bits=32), so not paged_adamw8bit: mapped to adamw, the "
            "estimator's 32-bit AdamW. That counts 8 B/param of state and a 4 B/param foreach step temporary that a "
            "paged optimizer keeps in CUDA unified memory outside PyTorch's allocator (or does not create): an "
            "over-count of up to trainable x 12 B (bitsandbytes pages only state tensors of >= 1e5 elements; smaller "
            "ones, e.g. rank-8 LoRA matrices, stay in PyTorch memory); see 'if modelled as paged' below")
        return "adamw"
    if "adam8bit" in t or "adamw8bit" in t:
        row.mapping.append("bitsandbytes Adam8bit (non-paged) -> adamw8bit")
        return "adamw8bit"
    if "trainer default adamw" in t:
        row.mapping.append("Trainer default AdamW of early 2022 (transformers.AdamW, fp32 states) -> adamw")
        return "adamw"
    if "adamw" in t:
        return "adamw"
    row.reasons.append(f"optimizer {text!r} has no estimator equivalent")
    return None


def lora_targets(rec: dict[str, Any], stack: str, model_type: str, row: Row) -> list[str] | str | None:
    peft = rec.get("peft") or {}
    raw = peft.get("target_modules")
    if raw in (None, "unknown"):
        row.reasons.append("LoRA target modules not stated")
        return None
    raw = list(raw)
    if stack.startswith("litgpt"):
        names = LITGPT_NAMES["phi" if model_type == "phi" else "llama"]
        out = [hf for t in raw for hf in names[t]]
        row.mapping.append(f"litgpt lora switches {raw} -> HF modules {out}")
        return out
    if stack == "torchtune":
        out = [hf for t in raw for hf in TORCHTUNE_NAMES[t]]
        if peft.get("apply_lora_to_mlp"):
            out += TORCHTUNE_MLP
        if peft.get("apply_lora_to_output"):
            out += ["lm_head"]
        mlp = bool(peft.get("apply_lora_to_mlp"))
        row.mapping.append(f"torchtune lora_attn_modules {raw} + apply_lora_to_mlp={mlp} -> HF modules {out}")
        return out
    return raw


def method_settings(rec: dict[str, Any], stack: str, model_type: str, row: Row) -> dict[str, Any] | None:
    method = rec["method"]
    peft = rec.get("peft") or {}
    entry: dict[str, Any] = {"method": method}
    if method in ("lora", "qlora"):
        rank = peft.get("rank")
        if not isinstance(rank, int):
            row.reasons.append("LoRA rank not stated")
            return None
        targets = lora_targets(rec, stack, model_type, row)
        if targets is None:
            return None
        dropout = _first_float(peft.get("dropout"))
        if dropout is None and stack == "torchtune":
            dropout = TORCHTUNE_DEFAULT_LORA_DROPOUT
            row.mapping.append(f"LoRA dropout not stated: the lora_llama2 builder default of a later torchtune "
                               f"version ({dropout}) assumed; v0.1's default not checked (< 0.01 GiB either way)")
        elif dropout is None:
            row.reasons.append("LoRA dropout not stated")
            return None
        alpha = _first_float(peft.get("alpha"))
        entry.update(ranks=[rank], target_modules=targets, dropout=dropout)
        if alpha is not None:
            entry["alpha"] = alpha
    elif method == "prefix":
        entry.update(num_virtual_tokens=int(peft["num_virtual_tokens"]), projection=bool(peft.get("prefix_projection")))
    elif method == "prompt":
        entry.update(num_virtual_tokens=int(peft["num_virtual_tokens"]))
    elif method == "ia3":
        entry.update(target_modules=list(peft["target_modules"]), feedforward_modules=list(peft["feedforward_modules"]))
    return entry


def seq_len_of(rec: dict[str, Any], row: Row) -> int | None:
    seq = rec.get("seq_len") or {}
    value, kind = seq.get("value"), seq.get("kind")
    if not isinstance(value, int):
        row.reasons.append("sequence length not stated")
        return None
    if kind == "fixed":
        return value
    if kind in ("max_truncate", "longest_forced"):
        how = ("truncation length; batches are padded to their longest sample, so the peak is taken to be the "
               "step whose batch reaches it" if kind == "max_truncate"
               else "longest sample, forced into the first micro-batch, so the peak sees it")
        row.mapping.append(f"seq_len {value} = the stated maximum ({kind}: {how})")
        return value
    row.reasons.append(f"sequence length kind {kind!r}: whether batches reach {value} tokens is not stated")
    return None


# Gradient accumulation stated by each source's config (only full fine-tuning's peak depends on it).
GRAD_ACCUM = {
    "litgpt-hub-tinyllama-full": (8, "tiny-llama/full.yaml: global_batch_size 32 over micro_batch_size 4"),
    "hf-docs-bert-large-full-bs1": (4, "gradient_accumulation_steps=4 (quoted)"),
    "hf-docs-bert-large-full-bs1-gc": (4, "gradient_accumulation_steps=4 (quoted)"),
}


def stack_knobs(rec: dict[str, Any], stack: str, row: Row) -> dict[str, Any]:
    """The estimator's implementation knobs (Workload fields) that each source's stack sets, with why."""
    kw: dict[str, Any] = {}
    if stack.startswith("litgpt"):
        kw.update(adapter_dtype="model", loss="chunked")
        row.mapping.append("litgpt: bf16-true keeps LoRA weights in bf16 (adapter_dtype=model) and its loss is "
                           "chunked_cross_entropy on bf16 logits (loss=chunked)")
    elif stack == "torchtune":
        kw.update(adapter_dtype="model")
        row.mapping.append("torchtune: LoRA weights in the model's bf16 (adapter_dtype=model)")
    elif stack == "hf-transformers-docs":
        kw.update(attention="eager", grad_accum=2)
        row.mapping.append("transformers 2022 BERT: eager attention (attention=eager); the Trainer's zero_grad() "
                           "kept .grad allocated between steps (torch 1.x set_to_none=False), as accumulation "
                           "does (grad_accum>1)")
    if stack == "hf-transformers-docs":
        kw["optimizer_impl"] = "forloop"
        row.mapping.append("transformers.AdamW of 2022: a per-parameter loop (optimizer_impl=forloop)")
    if rec["method"] == "qlora" and stack.startswith("litgpt"):
        kw["bnb_saves_4bit_inputs"] = True
        row.mapping.append("bitsandbytes before 0.43.2 (lit-gpt 2023: 0.41.1; the 2024 table's version is not "
                           "stated) saved every 4-bit linear's input (bnb_saves_4bit_inputs)")
    if rec["id"] in GRAD_ACCUM:
        kw["grad_accum"], why = GRAD_ACCUM[rec["id"]]
        row.mapping.append(f"grad_accum={kw['grad_accum']}: {why}")
    return kw


def build(rec: dict[str, Any]) -> tuple[Row, Any, Any, Workload | None]:
    stack = stack_of(rec)
    row = Row(id=rec["id"], stack=stack, method=rec["method"], model=rec["model"], status="excluded")
    measured = rec.get("measured") or {}
    row.measured_kind = measured.get("kind", "unknown")
    row.trainable_published = rec.get("trainable_params")
    if rec.get("value_bytes") is None:
        row.reasons.append(f"value_bytes null (unit {rec.get('unit_definition')!r}: value {rec.get('value')} "
                           f"{rec.get('unit')} cannot be converted to bytes)")
    else:
        row.measured_bytes = float(rec["value_bytes"])
    if row.measured_kind not in ("max_memory_allocated", "max_memory_reserved", "nvml_used"):
        row.reasons.append(f"measured kind {row.measured_kind!r}: no comparison basis")
    batch = rec.get("micro_batch_size")
    if not isinstance(batch, int):
        row.reasons.append("micro batch size not stated")
    seq = seq_len_of(rec, row)
    gc = rec.get("gradient_checkpointing")
    if not isinstance(gc, bool):
        row.reasons.append("gradient checkpointing not stated")
    precision = precision_of(rec.get("precision"), row)
    optimizer = optimizer_of(rec, row)
    cfg = model_config(rec, row)
    task, labels = TASKS.get(rec["model"], ("causal_lm", 2))
    row.task, row.num_labels = task, labels
    arch = None
    if cfg is not None:
        try:
            arch = arch_from_config(cfg, task, labels)
        except PeftbenchError as err:
            row.reasons.append(f"model not expressible: {err}")
    entry = method_settings(rec, stack, cfg.get("model_type", "") if cfg else "", row) if arch is not None else None
    if row.measured_kind == "nvml_used":
        repo = rec["source"].get("repo", "")
        if repo in NVML_CONTEXT:
            row.context_bytes, why = NVML_CONTEXT[repo]
            row.mapping.append(f"nvml_used: estimate compared as peak + {why}")
        else:
            row.reasons.append("nvml_used without a CUDA context reported by the same source")
    if row.reasons or arch is None or entry is None:
        return row, None, None, None
    m = registry.get(rec["method"])
    fp = m.footprint(arch, m.Settings.model_validate(entry))
    kw: dict[str, Any] = {}
    if "packed" in Workload.__dataclass_fields__:
        kw["packed"] = False  # every source pads batches (or feeds fixed-length ones): none packs sequences
    if arch.kv_heads < arch.heads:
        row.mapping.append(
            "grouped KV heads: litgpt always expands K/V to the query heads before SDPA; transformers does when the "
            "batch carries an attention mask (padding) -- the estimator's unpacked case (K/V at query width)"
            if stack.startswith("litgpt") else
            "grouped KV heads: batches padded to their longest sample carry an attention mask, so transformers "
            "expands K/V (estimator: packed=False); a longest batch without any padding would drop the mask and "
            "keep K/V at KV width")
    kw["kahan_sum"] = False  # every source's AdamW is a plain one (torch, Trainer's, bitsandbytes'): none keeps a
    # Kahan compensation for 16-bit weights as peftbench's does
    kw.update(stack_knobs(rec, stack, row))
    w = Workload(batch=batch, seq_len=seq, precision=precision, grad_ckpt=gc, optimizer=optimizer, gpus=1,
                 device="cuda", **kw)
    row.settings, row.workload, row.status = entry, asdict(w), "included"
    row.basis = {"max_memory_allocated": "peak", "max_memory_reserved": "peak (reserved >= allocated)",
                 "nvml_used": "peak + CUDA context"}[row.measured_kind]
    return row, arch, fp, w


def source_caveats(rec: dict[str, Any], row: Row, arch, fp, w: Workload) -> None:
    """Mappings the estimator cannot express exactly: say so, with the size of the difference where it is known."""
    stack, quant = row.stack, str(rec.get("quantization", "none"))
    if rec["method"] == "qlora" and "double quant" in quant and "no double quant" in quant:
        diff = arch.block_linear_params * (0.5 + 4 / 64) - arch.block_linear_params * (0.5 + 1 / 64 + 4 / 64 / 256)
        row.mapping.append(f"NF4 without double quantization, but the estimator models NF4 with double quant "
                           f"(weights {diff / GIB:.2f} GiB low)")
    if rec["method"] == "qlora" and stack != "hf-peft-metamathqa":
        row.mapping.append("non-quantized parameters: the estimator assumes peft's prepare_model_for_kbit_training "
                           "(fp32); this source keeps them in bf16 and does not call it")
    if stack == "litgpt-resource-tables-2023" and "phi" in rec["model"]:
        row.mapping.append("litgpt's own phi: F.gelu(approximate='tanh') saves only its input; the estimator "
                           "models transformers' gelu_new, which saves 4 tensors of the MLP width (over-count)")
    if stack.startswith("litgpt"):
        row.mapping.append("litgpt's own model code (fused QKV LoRA, its attention) is not modelled: the estimator "
                           "counts transformers' Llama/Phi blocks")
    stated = str(rec.get("optimizer", "")).lower().replace(" ", "")
    if "pagedadamw" in stated and "pagedadamw8bit" not in stated:
        alt = estimate(arch, fp, Workload(**{**asdict(w), "optimizer": "paged_adamw8bit"}))
        row.mapping.append(f"if modelled as paged (state outside the allocator, as the estimator's paged_adamw8bit): "
                           f"estimate {alt.peak_bytes / GIB:.2f} GiB "
                           f"({(alt.peak_bytes - row.estimate_peak_bytes) / GIB:+.3f} GiB)")


UNIT_BYTES = {"bytes": 1, "GB": 1e9, "MB": 2**20}  # MB in this file: the transformers docs' MiB (// 1024**2)


def other_figures(rec: dict[str, Any], row: Row) -> None:
    """Echo the source's other published figures for the same run (context for the comparison, not compared)."""
    for m in rec.get("other_measurements") or []:
        scale = UNIT_BYTES.get(str(m.get("unit")))
        if scale is None or not isinstance(m.get("value"), (int, float)):
            continue
        # an unquoted comma in a YAML flow mapping ("quantity: Peak memory reserved, model init") splits the
        # quantity: the tail comes back as a key with no value
        quantity = ", ".join([str(m["quantity"])] + [str(k) for k, v in m.items() if v is None])
        share = 100 * m["value"] * scale / row.measured_bytes
        row.mapping.append(f"also published: {quantity} ({m.get('kind', '')}) = {m['value'] * scale / GIB:.2f} GiB, "
                           f"{share:.0f}% of the compared figure")


def run(records: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for rec in records:
        row, arch, fp, w = build(rec)
        if row.status == "included":
            est = estimate(arch, fp, w)
            row.estimate_peak_bytes = est.peak_bytes
            row.compared_bytes = est.peak_bytes + row.context_bytes
            row.error_pct = 100 * (row.compared_bytes - row.measured_bytes) / row.measured_bytes
            row.breakdown = dict(est.breakdown)
            row.estimator_notes = list(est.notes)
            row.trainable_est = est.trainable_params
            if row.trainable_published and row.trainable_published != est.trainable_params:
                row.mapping.append(f"trainable params: estimator {est.trainable_params:,} vs published "
                                   f"{row.trainable_published:,}")
            source_caveats(rec, row, arch, fp, w)
            other_figures(rec, row)
        rows.append(row)
    return rows


def summary(rows: list[Row]) -> dict[str, Any]:
    def stats(sel: list[Row]) -> dict[str, Any]:
        errs = [abs(r.error_pct) for r in sel]
        return {"n": len(errs), "mean_abs_error_pct": round(sum(errs) / len(errs), 2) if errs else None,
                "max_abs_error_pct": round(max(errs), 2) if errs else None,
                "mean_signed_error_pct": round(sum(r.error_pct for r in sel) / len(sel), 2) if sel else None}

    inc = [r for r in rows if r.status == "included"]
    out = {"all_included": stats(inc), "hf_transformers_peft": stats([r for r in inc if r.stack in HF_STACKS])}
    for s in sorted({r.stack for r in inc} - set(HF_STACKS)):
        out[s] = stats([r for r in inc if r.stack == s])
    return out


# ---- output -------------------------------------------------------------------------------------------------------

SHORT = {"weights": "W", "adapters": "Ad", "optimizer_states": "Opt", "gradients": "G", "optimizer_step_temp": "Xs",
         "activations": "A", "logits_loss": "Lg", "transient": "Xt"}


def estimator_version() -> str:
    """The commit of the estimator the numbers come from (peftbench/estimate.py is edited in place)."""
    import subprocess

    def git(*a: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=10)
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "peftbench")
    return head + (" + uncommitted changes under peftbench/" if dirty else "")


def print_table(rows: list[Row]) -> None:
    inc = [r for r in rows if r.status == "included"]
    print(f"estimator: peftbench/estimate.py at {estimator_version()}")
    head = (f"{'id':38} {'method':6} {'model':22} {'b x s':9} {'basis':7} {'meas GiB':>8} {'est GiB':>8} "
            f"{'err %':>7}  components GiB: " + " ".join(SHORT.values()) + " ctx")
    print(head)
    print("-" * len(head))
    for r in inc:
        model = r.model.split("/")[-1].replace("-intermediate-step-1431k-3T", "")[:22]
        w = r.workload
        comps = " ".join(f"{k}={r.breakdown[name] / GIB:.2f}" for name, k in SHORT.items()
                         if r.breakdown[name] >= 0.005 * GIB)
        if r.context_bytes:
            comps += f" ctx={r.context_bytes / GIB:.2f}"
        basis = {"max_memory_allocated": "alloc", "max_memory_reserved": "reserv", "nvml_used": "nvml"}[r.measured_kind]
        print(f"{r.id:38} {r.method:6} {model:22} {w['batch']}x{w['seq_len']:<7} {basis:7} "
              f"{r.measured_bytes / GIB:8.2f} {r.compared_bytes / GIB:8.2f} {r.error_pct:+7.1f}  {comps}")
    print()
    print("W weights, Ad adapters (fp32 unless adapter_dtype=model), Opt optimizer states, G gradients, "
          "Xs optimizer-step temporaries, A activations, Lg logits/loss, Xt transient (4-bit dequant), "
          "ctx CUDA context (nvml rows only).")
    print("peak = W + Ad + Opt + max(A + Lg, G + Xs) + Xt for full fine-tuning; W + Ad + Opt + A + Lg + G + Xs + Xt "
          "otherwise. basis: alloc = max_memory_allocated, reserv = max_memory_reserved (>= allocated), "
          "nvml = driver-level used (compared with peak + ctx).")
    print()
    print("Excluded records:")
    for r in rows:
        if r.status == "excluded":
            print(f"  {r.id}: " + "; ".join(r.reasons))
    print()
    print("Mapping of each included record (assumptions):")
    for r in inc:
        print(f"  {r.id} [{r.stack}; {r.config_name}; workload {r.workload['precision']}, "
              f"gc={r.workload['grad_ckpt']}, {r.workload['optimizer']}; settings "
              f"{ {k: v for k, v in r.settings.items() if k != 'method'} }]")
        for m in r.mapping + [f"estimator: {n}" for n in r.estimator_notes]:
            print(f"      - {m}")
    print()
    s = summary(rows)
    print("Errors (|est - measured| / measured):")
    for name, st in s.items():
        if st["n"]:
            print(f"  {name:32} n={st['n']:2}  mean |err| {st['mean_abs_error_pct']:6.1f} %   "
                  f"max |err| {st['max_abs_error_pct']:6.1f} %   mean signed {st['mean_signed_error_pct']:+6.1f} %")


def to_json(rows: list[Row]) -> dict[str, Any]:
    def rowj(r: Row) -> dict[str, Any]:
        d = asdict(r)
        d["breakdown_gib"] = {k: round(v / GIB, 4) for k, v in d.pop("breakdown").items()}
        for k in ("measured_bytes", "estimate_peak_bytes", "compared_bytes", "context_bytes"):
            if d[k] is not None:
                d[k.replace("_bytes", "_gib")] = round(d[k] / GIB, 4)
        if d["error_pct"] is not None:
            d["error_pct"] = round(d["error_pct"], 2)
        return d

    return {"estimator_version": estimator_version(), "records": [rowj(r) for r in rows], "summary": summary(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--yaml", type=Path, default=DEFAULT_YAML, help="published measurements (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = ap.parse_args()
    records = yaml.safe_load(args.yaml.read_text())
    rows = run(records)
    if args.json:
        print(json.dumps(to_json(rows), indent=1))
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
