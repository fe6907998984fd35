"""The analytic memory model (peftbench/estimate.py) on hand-computed cases and its structural properties. No torch.

The toy architecture below is small enough to add up by hand; each expected number is derived in the comments
from the formulas of docs/memory-model.md as estimate.py applies them, so a change to a formula has
to change its derivation here too.
"""

from __future__ import annotations

import pytest

from peftbench import catalog
from peftbench import methods as registry
from peftbench.arch import arch_from_config
from peftbench.errors import PeftbenchError
from peftbench.estimate import GIB, NF4_DQ_BYTES, Workload, estimate, estimate_run

# Llama-style toy: h=8, i=16, 2 layers, 2 query heads of dim 4, 1 KV head (kv width 4), vocabulary 10, untied head.
TOY = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
       "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10, "tie_word_embeddings": False}
# Per block: q 8x8=64, k 8x4=32, v 8x4=32, o 8x8=64, gate/up/down 8x16=128 each -> 576; two blocks -> 1,152.
# Rest: embedding 10x8=80, lm_head 8x10=80, two RMSNorms per block (2x2x8=32), final norm 8 -> 200.
TOY_BLOCK_LINEAR, TOY_REST = 1152, 200
TOY_TOTAL = TOY_BLOCK_LINEAR + TOY_REST  # 1,352
CPU_FP32 = Workload(batch=1, seq_len=4, precision="fp32", optimizer="adamw", device="cpu")


def footprint(arch, method: str, **settings):
    m = registry.get(method)
    return m.footprint(arch, m.Settings.model_validate({"method": method, **settings}))


@pytest.fixture
def toy():
    return arch_from_config(TOY)


def test_toy_parameter_counts(toy):
    assert toy.block_linear_params == TOY_BLOCK_LINEAR
    assert toy.total_params == TOY_TOTAL


def test_lora_on_the_toy_by_hand(toy):
    fp = footprint(toy, "lora", ranks=[2])  # peft's Llama default targets: q_proj, v_proj; dropout 0.05
    # trainable: per block r*(8+8) for q + r*(8+4) for v = 32 + 24 = 56; two blocks -> 112
    assert fp.trainable == fp.added == 112
    est = estimate(toy, fp, CPU_FP32)
    b = est.breakdown
    assert b["weights"] == 4 * TOY_TOTAL  # 5,408: fp32 base
    assert b["adapters"] == 4 * 112  # 448: fp32 adapters
    assert b["gradients"] == 4 * 112  # 448
    assert b["optimizer_states"] == 8 * 112  # 896: two fp32 AdamW moments
    # CPU single-tensor AdamW: two temporaries of the largest trainable tensor, r*max(d_in, d_out) = 2*8 = 16
    assert b["optimizer_step_temp"] == 2 * 16 * 4  # 128
    # per token per block: 2 RMSNorm inputs saved in fp32 (2*4*8 = 64); attention q, k, v, out with K and V
    # expanded to the 2 query heads by repeat_kv (4*(8+8+8+8) = 128) + logsumexp (4 per head = 8); SwiGLU act
    # input, act output, up output (3*4*16 = 192); LoRA per wrapped linear: fp32 dropout output (4*8), the CPU
    # dropout's fp32 noise (4*8), fp32 lora_A output (4*2) = 72, twice = 144 -> 536.
    # Tokens 4, blocks 2: 4*2*536 = 4,288, plus the final norm's fp32 input 4*4*8 = 128 -> 4,416.
    assert b["activations"] == 4416
    assert b["logits_loss"] == 4 * 10 * 12  # tokens x vocab x 12 bytes (fp32 logits, log-softmax, its gradient)
    assert b["transient"] == 0
    # PEFT: activations, logits and the small gradients coexist at the start of backward.
    assert est.peak_bytes == 5408 + 448 + 896 + (4416 + 480 + 448 + 128)
    assert est.cuda_context_bytes == 0  # a CPU workload has no CUDA context
    # On CUDA the dropout mask is 1 byte (fused kernel); packed batches (no attention mask) keep K, V at the KV
    # width: 2 modules x 3 bytes x 8 less, and 2 x 4 x (8 - 4) less, per token per block.
    cuda = estimate(toy, fp, Workload(batch=1, seq_len=4, precision="fp32", device="cuda"))
    assert cuda.breakdown["activations"] == 4416 - 4 * 2 * (2 * 3 * 8)
    packed = estimate(toy, fp, Workload(batch=1, seq_len=4, precision="fp32", device="cpu", packed=True))
    assert packed.breakdown["activations"] == 4416 - 4 * 2 * (2 * 4 * 4)


def test_full_fine_tuning_on_the_toy_by_hand(toy):
    fp = footprint(toy, "full")
    assert fp.trainable == TOY_TOTAL and fp.added == 0
    est = estimate(toy, fp, CPU_FP32)
    b = est.breakdown
    assert b["gradients"] == 4 * TOY_TOTAL and b["optimizer_states"] == 8 * TOY_TOTAL
    # largest trainable tensor: an MLP matrix, 128 elements (embedding and head are 80)
    assert b["optimizer_step_temp"] == 2 * 128 * 4
    # full FT also saves the input of every trainable linear: q/k/v share one (8), o (8), gate/up share one (8),
    # down (16), and each norm weight's normalised input (2 x 8): 56 elements x 4 bytes = 224 more per token
    assert b["activations"] == 4 * 2 * (64 + 136 + 192 + 224) + 128
    # Gradients fill up while activations drain: the peak takes the larger side, not the sum.
    during = max(b["activations"] + b["logits_loss"], b["gradients"] + b["optimizer_step_temp"])
    assert est.peak_bytes == b["weights"] + b["optimizer_states"] + during
    assert est.peak_bytes < sum(b.values())


def test_qlora_weights_and_dequant_buffer_on_the_toy(toy):
    lora = estimate(toy, footprint(toy, "lora", ranks=[2]), Workload(seq_len=4))
    q = estimate(toy, footprint(toy, "qlora", ranks=[2]), Workload(seq_len=4))
    # NF4 double-quantized block linears + every other parameter in the load dtype: bf16 here (peftbench skips
    # prepare_model_for_kbit_training's fp32 up-cast), fp32 in an fp32 or mixed-precision run
    assert q.breakdown["weights"] == pytest.approx(TOY_BLOCK_LINEAR * NF4_DQ_BYTES + TOY_REST * 2)
    q32 = estimate(toy, footprint(toy, "qlora", ranks=[2]), Workload(seq_len=4, precision="fp32"))
    assert q32.breakdown["weights"] == pytest.approx(TOY_BLOCK_LINEAR * NF4_DQ_BYTES + TOY_REST * 4)
    assert NF4_DQ_BYTES == pytest.approx(4.127 / 8, abs=1e-4)  # 4.127 bits per parameter (QLoRA paper)
    # one linear dequantized at a time to the bf16 compute dtype: the largest, 128 elements x 2 bytes
    assert q.breakdown["transient"] == 128 * 2
    assert lora.breakdown["weights"] == 2 * TOY_TOTAL  # bf16 base
    assert q.trainable_params == lora.trainable_params


# ---- published trainable-parameter counts (PEFT MetaMathQA logs, litgpt tables) --------------------------------

@pytest.mark.parametrize(("model", "method", "settings", "expected"), [
    ("llama-2-7b", "lora", {"ranks": [8]}, 4_194_304),  # litgpt resource table, r8 on q,v
    ("llama-3.2-3b", "lora", {"ranks": [32]}, 9_175_040),  # PEFT MetaMathQA lora r32 q,v
    ("llama-3.2-3b", "lora", {"ranks": [10], "target_modules": ["gate_proj", "up_proj", "down_proj"]}, 9_461_760),
    ("llama-3.2-3b", "prefix", {"num_virtual_tokens": 200}, 11_468_800),  # KV width 1,024 (GQA)
    ("llama-3.2-3b", "prompt", {"num_virtual_tokens": 200}, 614_400),
    ("llama-3.2-3b", "ia3", {}, 286_720),  # 28 x (2 x 1,024 + 8,192)
    ("llama-3.2-3b", "full", {}, 3_212_749_824),
    ("phi-1.5", "lora", {"ranks": [8], "target_modules": ["q_proj", "v_proj"]}, 1_572_864),  # litgpt table
])
def test_published_trainable_counts(model, method, settings, expected):
    arch = arch_from_config(catalog.resolve(model).config)
    assert footprint(arch, method, **settings).trainable == expected


@pytest.mark.parametrize("name", catalog.names())
def test_catalog_totals_match_published_counts(name):
    cfg = catalog.resolve(name).config
    assert arch_from_config(cfg).total_params == cfg["_peftbench"]["params"]


# ---- properties ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama7b():
    return arch_from_config(catalog.resolve("llama-2-7b").config)


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "prefix", "prompt", "ia3"])
def test_more_tokens_never_need_less_memory(llama7b, method):
    fp = footprint(llama7b, method)
    shapes = ((1, 256), (2, 256), (2, 512), (8, 2048))
    peaks = [estimate(llama7b, fp, Workload(batch=b, seq_len=s)).peak_bytes for b, s in shapes]
    # Non-decreasing; a full fine-tune's small batches all peak at gradients + step, the largest at activations.
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "prefix", "prompt", "ia3"])
def test_gradient_checkpointing_cuts_activations(llama7b, method):
    fp = footprint(llama7b, method)
    off = estimate(llama7b, fp, Workload(batch=4, seq_len=1024))
    on = estimate(llama7b, fp, Workload(batch=4, seq_len=1024, grad_ckpt=True))
    assert on.breakdown["activations"] < off.breakdown["activations"] / 4
    assert on.breakdown["weights"] == off.breakdown["weights"]


def test_prompt_tuning_lengthens_every_sequence(llama7b):
    w = Workload(batch=2, seq_len=500)
    lora = estimate(llama7b, footprint(llama7b, "lora"), w)
    prompt = estimate(llama7b, footprint(llama7b, "prompt", num_virtual_tokens=100), w)
    assert prompt.breakdown["logits_loss"] == pytest.approx(lora.breakdown["logits_loss"] * 600 / 500)


def test_lora_on_every_linear_saves_more_than_on_q_and_v(llama7b):
    w = Workload(batch=1, seq_len=512)
    qv = estimate(llama7b, footprint(llama7b, "lora", ranks=[8]), w).breakdown["activations"]
    every = estimate(llama7b, footprint(llama7b, "lora", ranks=[8], target_modules="all-linear"), w)
    assert every.breakdown["activations"] > 1.2 * qv


def test_bf16_full_fine_tuning_static_terms(llama7b):
    """Pure bf16 with peftbench's AdamW: weights, gradients, both moments and the Kahan compensation in bf16 -> 10
    bytes per parameter of static state; a plain torch AdamW (kahan_sum=False) 8."""
    est = estimate(llama7b, footprint(llama7b, "full"), Workload(batch=1, seq_len=16))
    p = llama7b.total_params
    assert est.breakdown["weights"] == 2 * p and est.breakdown["gradients"] == 2 * p
    assert est.breakdown["optimizer_states"] == 6 * p
    assert est.peak_gib >= 10 * p / GIB  # the Triton step keeps no temporary: gradients + states at the step
    assert any("Kahan" in n for n in est.notes)
    plain = estimate(llama7b, footprint(llama7b, "full"), Workload(batch=1, seq_len=16, kahan_sum=False))
    assert plain.breakdown["optimizer_states"] == 4 * p
    assert plain.peak_gib > 8 * p / GIB  # plus the foreach step temporary
    # fp32 trainable weights get no compensation: the same AdamW as before
    mixed = estimate(llama7b, footprint(llama7b, "full"), Workload(batch=1, seq_len=16, precision="bf16-mixed"))
    assert mixed.breakdown["optimizer_states"] == 8 * p


def test_optimizers(llama7b):
    fp = footprint(llama7b, "full")
    adamw = estimate(llama7b, fp, Workload(precision="bf16-mixed"))
    eight = estimate(llama7b, fp, Workload(precision="bf16-mixed", optimizer="adamw8bit"))
    paged = estimate(llama7b, fp, Workload(precision="bf16-mixed", optimizer="paged_adamw8bit"))
    sgd = estimate(llama7b, fp, Workload(precision="bf16-mixed", optimizer="sgd"))
    assert adamw.breakdown["optimizer_states"] == 8 * fp.trainable  # fp32 master weights: two fp32 moments
    assert eight.breakdown["optimizer_states"] == pytest.approx(2 * fp.trainable, rel=0.02)
    assert paged.breakdown["optimizer_states"] == 0 and any("paged" in n for n in paged.notes)
    assert sgd.breakdown["optimizer_states"] == 4 * fp.trainable
    assert paged.peak_bytes < eight.peak_bytes < adamw.peak_bytes


def test_sharding_full_fine_tuning_lowers_the_per_gpu_figure(llama7b):
    fp = footprint(llama7b, "full")
    one = estimate(llama7b, fp, Workload())
    ddp = estimate(llama7b, fp, Workload(gpus=8))
    zero2 = estimate(llama7b, fp, Workload(gpus=8, strategy="zero2"))
    zero3 = estimate(llama7b, fp, Workload(gpus=8, strategy="zero3"))
    assert zero3.peak_bytes < zero2.peak_bytes < one.peak_bytes <= ddp.peak_bytes
    assert zero3.breakdown["optimizer_states"] == pytest.approx(one.breakdown["optimizer_states"] / 8)
    assert zero2.breakdown["weights"] == one.breakdown["weights"]  # ZeRO-2 keeps a full replica of the weights


def test_cuda_context_is_reported_apart_from_the_peak(llama7b):
    est = estimate(llama7b, footprint(llama7b, "lora"), Workload())
    assert est.cuda_context_bytes > 0
    assert est.peak_bytes == pytest.approx(sum(v for k, v in est.breakdown.items()))  # PEFT: everything coexists
    j = est.to_json()
    assert {"trainable_params", "total_params", "peak_gib", "cuda_context_gib", "breakdown"} <= set(j)
    assert j["peak_gib"] == pytest.approx(est.peak_bytes / GIB, abs=1e-4)


def test_classification_has_no_vocabulary_logits():
    arch = arch_from_config(catalog.resolve("llama-3.2-1b").config, "classification", 3)
    est = estimate(arch, footprint(arch, "lora"), Workload(batch=8, seq_len=256))
    assert est.breakdown["logits_loss"] == 0
    assert arch.heads_out[0].path == "score" and arch.heads_out[0].d_out == 3


def test_estimate_run_reads_a_resolved_suite():
    suite = {"model": {"name": "llama-2-7b", "task": "causal_lm"},
             "training": {"batch_size": 4, "max_length": 512, "precision": "bf16", "gradient_checkpointing": True,
                          "device": "cuda"}}
    est = estimate_run(suite, "lora", {"method": "lora", "ranks": [8]})
    assert est.trainable_params == 4_194_304 and est.cuda_context_bytes > 0
    cpu = estimate_run({**suite, "training": {**suite["training"], "device": "cpu"}}, "lora",
                       {"method": "lora", "ranks": [8]})
    assert cpu.cuda_context_bytes == 0


def test_unsupported_architecture_is_a_user_error():
    with pytest.raises(PeftbenchError, match="no memory model for model_type 't5'"):
        arch_from_config({"model_type": "t5", "d_model": 512})
    with pytest.raises(PeftbenchError, match="lacks a usable"):
        arch_from_config({"model_type": "llama", "hidden_size": 8})


# ---- implementation knobs (each a real choice of the training stack) ------------------------------------------

def test_gradient_accumulation_keeps_full_gradients_beside_activations(toy):
    full, lora = footprint(toy, "full"), footprint(toy, "lora", ranks=[2])
    one = estimate(toy, full, CPU_FP32)
    acc = estimate(toy, full, Workload(batch=1, seq_len=4, precision="fp32", device="cpu", grad_accum=4))
    b = acc.breakdown
    assert acc.peak_bytes == b["weights"] + b["optimizer_states"] + b["gradients"] + max(
        b["activations"] + b["logits_loss"], b["optimizer_step_temp"])
    assert acc.peak_bytes > one.peak_bytes
    # adapters' gradients already coexist with the activations: accumulation changes nothing for them
    assert estimate(toy, lora, Workload(batch=1, seq_len=4, precision="fp32", device="cpu", grad_accum=4)).peak_bytes \
        == estimate(toy, lora, CPU_FP32).peak_bytes


def test_eager_attention_saves_the_probabilities(toy):
    fp = footprint(toy, "lora", ranks=[2])
    sdpa = estimate(toy, fp, CPU_FP32).breakdown["activations"]
    eager = estimate(toy, fp, Workload(batch=1, seq_len=4, precision="fp32", device="cpu", attention="eager"))
    # tokens 4 x blocks 2 x heads 2 x keys 4 x 4 bytes (fp32 softmax output; the toy has no dropout)
    assert eager.breakdown["activations"] - sdpa == 4 * 2 * 2 * 4 * 4


def test_adapters_in_the_model_dtype(llama7b):
    fp = footprint(llama7b, "lora", ranks=[16], target_modules="all-linear")
    f32 = estimate(llama7b, fp, Workload(seq_len=256))
    # the stacks that keep adapters in bf16 (litgpt, torchtune) run a plain AdamW
    b16 = estimate(llama7b, fp, Workload(seq_len=256, adapter_dtype="model", kahan_sum=False))
    for part in ("adapters", "gradients", "optimizer_states"):
        assert b16.breakdown[part] == pytest.approx(f32.breakdown[part] / 2)
    kahan = estimate(llama7b, fp, Workload(seq_len=256, adapter_dtype="model"))  # peftbench's on bf16 adapters
    assert kahan.breakdown["optimizer_states"] == pytest.approx(f32.breakdown["optimizer_states"] * 3 / 4)
    assert b16.breakdown["activations"] < f32.breakdown["activations"]  # LoRA inputs saved in bf16, not fp32


def test_chunked_loss_and_optimizer_implementations(llama7b):
    fp = footprint(llama7b, "full")
    w = Workload(batch=2, seq_len=512)
    assert estimate(llama7b, fp, Workload(batch=2, seq_len=512, loss="chunked")).breakdown["logits_loss"] == \
        2 * 512 * llama7b.vocab * 4
    plain = Workload(batch=2, seq_len=512, kahan_sum=False)  # torch's AdamW on the bf16 weights
    assert estimate(llama7b, fp, plain).breakdown["optimizer_step_temp"] == fp.trainable * 2  # foreach on CUDA
    assert estimate(llama7b, fp, Workload(optimizer_impl="fused", kahan_sum=False)).breakdown[
        "optimizer_step_temp"] == 0
    assert estimate(llama7b, fp, Workload(optimizer_impl="forloop", kahan_sum=False)).breakdown[
        "optimizer_step_temp"] == 2 * fp.largest_trainable * 2
    # optimi's Kahan AdamW: its Triton kernel on CUDA keeps no temporaries, its CPU loop one of the largest tensor
    assert estimate(llama7b, fp, w).breakdown["optimizer_step_temp"] == 0
    assert estimate(llama7b, fp, Workload(device="cpu")).breakdown["optimizer_step_temp"] == \
        fp.largest_trainable * 2


def test_old_bitsandbytes_saved_every_4bit_input(llama7b):
    q, lora = footprint(llama7b, "qlora"), footprint(llama7b, "lora")
    w, old = Workload(batch=1, seq_len=100), Workload(batch=1, seq_len=100, bnb_saves_4bit_inputs=True)
    h, i = llama7b.hidden, llama7b.intermediate
    extra = 100 * llama7b.layers * 2 * (h + h + h + i)  # inputs of q/k/v, o, gate/up, down in bf16
    saved = {k: estimate(llama7b, q, k).breakdown["activations"] for k in (old, w)}
    assert saved[old] - saved[w] == extra
    assert estimate(llama7b, lora, old).breakdown == estimate(llama7b, lora, w).breakdown


def test_ia3_feed_forward_input_is_saved_in_fp32(llama7b):
    """peft's IA3 casts a feed-forward module's input to the fp32 vector's dtype before scaling it."""
    fp = footprint(llama7b, "ia3")
    kinds = {s.elements: s.kind for s in fp.saved}
    assert kinds[llama7b.intermediate] == "fp32"  # down_proj's input
    assert kinds[llama7b.kv_dim] == "act"  # k_proj and v_proj outputs
