"""benchmarks/gpu_check.py's 7B-step code, run on the CPU at a small shape: the GPU acceptance run must not first
fail on a GPU for a reason a CPU shows (issue: the 7B comparison)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from ..conftest import REPO

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_7b_step_trains_at_a_small_shape_on_the_cpu(gpu_check):
    out = {m: gpu_check.step_7b(m, gpu_check.SMALL_7B, "cpu") for m in ("lora", "qlora", "full")}
    assert all(o["ok"] and math.isfinite(o["loss"]) for o in out.values()), out
    assert out["lora"]["trainable"] == out["qlora"]["trainable"] == 2 * 4 * 16 * (128 + 128)  # 2 layers, q,k,v,o
    assert out["full"]["optimizer"] == "optimi AdamW, Kahan summation"  # bf16 weights trained
    assert out["lora"]["optimizer"] == out["qlora"]["optimizer"] == "torch AdamW"  # fp32 adapters


def test_quantize_nf4_replaces_every_block_linear(gpu_check):
    import bitsandbytes as bnb
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = {k: v for k, v in gpu_check.SMALL_7B.items() if k != "model_type"}
    model = LlamaForCausalLM(LlamaConfig(**fields)).to(torch.bfloat16)
    assert gpu_check.quantize_nf4(model, torch.bfloat16) == 2 * 7
    four = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four) == 14 and all(m.weight.dtype == torch.uint8 for m in four)
    assert type(model.lm_head) is torch.nn.Linear
