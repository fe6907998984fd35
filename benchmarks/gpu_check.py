"""The GPU acceptance run: every CUDA path of the harness, in a few minutes on one GPU, without the hub.

Run by hand on a machine with a CUDA GPU (not by pytest):

    python benchmarks/gpu_check.py --out gpu_check.json

Checks, each recorded in the JSON report with what it measured; the exit code is 1 when a required check fails,
2 when there is no CUDA device (the CPU checks ran; the CUDA ones could not), 0 when every check passed:

- cpu: left-padded batched greedy generation equals per-row generation (the evaluation's batching), on the CPU;
- cpu-qlora-suite: a `device: cpu` QLoRA suite runs whole (on a GPU machine bitsandbytes would place it on
  cuda:0 without the run's device map);
- cuda-generation: the same generation check on the GPU's kernels (fp32: the batching, not bf16 near-ties);
- cuda-suite-bf16: `peftbench run` of every core method on a random-weight Llama with Llama-2-7B's widths and
  2 layers, batch 4 x 512, bf16, gradient checkpointing (prefix tuning without: it cannot);
- cuda-suite-fp16: LoRA and QLoRA of the same model in fp16-mixed;
  required of both suites: every status ok, on CUDA, finite losses, reserved >= allocated, merged figures where
  the method merges;
- cuda-7b-step: one training step at the full Llama-2-7B shape (32 layers, random weights made on the GPU) for
  full fine-tuning (when the card holds it), LoRA r16 and QLoRA r16 on q,k,v,o (its NF4 weights quantized on the
  GPU from the random bf16 ones: quantize_nf4), through the harness's preparation and optimizer, each peak beside
  `peftbench estimate`'s;
- cuda-excluded-window: allocated and reserved peaks around an excluded window (measure.PeakMemory).

On a CPU machine the script runs its CPU checks, then says in one line that the rest needs CUDA and exits 2;
tests/integration/test_gpu_check.py runs its 7B-step code on the CPU at a small shape.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WIDE_LLAMA = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32,
              "num_hidden_layers": 2, "vocab_size": 32000, "max_position_embeddings": 4096}
SMALL_7B = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 4096, "max_position_embeddings": 4096}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
CORE = [{"method": "full", "learning_rate": 1e-5}, {"method": "lora", "ranks": [16], "learning_rate": 2e-4},
        {"method": "qlora", "ranks": [16], "learning_rate": 2e-4},
        {"method": "prefix", "num_virtual_tokens": 16, "gradient_checkpointing": False},
        {"method": "prompt", "num_virtual_tokens": 16}, {"method": "ia3"}]


def suite(name: str, model: dict, device: str, precision: str, methods: list[dict], batch: int, length: int,
          ckpt: bool) -> dict:
    return {
        "name": name,
        "model": {"name": "builtin:tiny-llama", "task": "causal_lm", "config_overrides": model},
        "dataset": {"builtin": "word-copy", "train_examples": 64, "eval_examples": 8},
        "training": {"steps": 4, "batch_size": batch, "max_length": length, "device": device,
                     "precision": precision, "gradient_checkpointing": ckpt, "warmup_timing_steps": 1,
                     "memory_profile_steps": 1},
        "evaluation": {"batch_size": 8, "max_new_tokens": 4},
        "latency": {"batch_size": 1, "seq_len": 64, "warmup": 1, "repeats": 3, "gen_new_tokens": 4,
                    "gen_repeats": 1},
        "runner": {"timeout_s": 900},
        "methods": methods,
    }


def run(data: dict, where: Path, cuda: bool) -> dict:
    """`peftbench run` of a suite, through the runner (one worker per run); the required checks on its records."""
    from peftbench import methods as registry
    from peftbench.runner import preflight, run_suite
    from peftbench.suite import load_suite

    path = where / f"{data['name']}.json"
    path.write_text(json.dumps(data))
    loaded = load_suite(path)
    preflight(loaded)
    records = run_suite(loaded, where / "results").records()
    problems = []
    for r in records:
        if r.status != "ok":
            problems.append(f"{r.run}: {r.status}: {r.error}")
            continue
        if cuda and not r.device.startswith("cuda"):
            problems.append(f"{r.run}: ran on {r.device}")
        if not all(math.isfinite(x) for x in (r.train_loss_first, r.train_loss_last)):
            problems.append(f"{r.run}: a loss is not finite")
        if cuda and not (r.peak_reserved_mib or 0) >= (r.peak_mem_mib or 0):
            problems.append(f"{r.run}: reserved {r.peak_reserved_mib} < allocated {r.peak_mem_mib}")
        mergeable = registry.get(r.method).traits.mergeable and r.method != "full"
        if mergeable and r.latency_ms_p50_merged is None:
            problems.append(f"{r.run}: mergeable but no merged figures ({r.merge_note})")
    return {"ok": not problems, "problems": problems,
            "runs": {r.run: {k: getattr(r, k) for k in ("status", "device", "peak_mem_mib", "est_peak_mib",
                                                          "peak_reserved_mib", "train_tokens_per_s",
                                                          "latency_ms_p50", "latency_ms_p50_merged", "error")}
                     for r in records}}


def generation(device: str, dtype_name: str) -> dict:
    """Left-padded batched greedy generation equals generating each row alone (what evaluation relies on). In fp32,
    so that it checks the batching (padding, masks, positions) and not bf16 near-ties between kernels; every row
    generates exactly its length (no end-of-sequence stop alone that the batch would pad over)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", vocab_size=128, num_hidden_layers=2, **TINY)
    model = AutoModelForCausalLM.from_config(cfg).to(device=device, dtype=dtype).eval()
    prompts = [[5, 9, 11], [7, 3, 2, 8, 4, 6], [10, 12]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.inference_mode():
        fixed = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
        batched = model.generate(input_ids=ids, attention_mask=mask, **fixed)[:, width:].tolist()
        alone = [model.generate(input_ids=torch.tensor([p], device=device), **fixed)[0, len(p):].tolist()
                 for p in prompts]
    return {"ok": batched == alone, "batched": batched, "alone": alone}


def excluded_window() -> dict:
    import torch

    from peftbench.measure import PeakMemory

    dev = torch.device("cuda")
    mem = PeakMemory(dev)
    mem.start()
    a = torch.zeros(1_000_000, device=dev)
    mem.exclude_begin()
    big = torch.zeros(50_000_000, device=dev)  # 200 MB inside the window
    del big
    mem.exclude_end()
    b = torch.zeros(2_000_000, device=dev)
    mem.stop()
    del a, b
    ok = 12e6 <= mem.peak_bytes < 100e6 and mem.peak_bytes <= mem.reserved_bytes < 100e6
    return {"ok": ok, "allocated_bytes": mem.peak_bytes, "reserved_bytes": mem.reserved_bytes}


def quantize_nf4(model, compute_dtype) -> int:
    """Replace every block linear of `model` (all but lm_head) by a bitsandbytes NF4 Linear4bit with double
    quantization, quantized from the weights it has, on their device: a QLoRA base of any shape without a
    download. What `from_pretrained(quantization_config=...)` builds; the harness's QLoRA settings. Returns how many."""
    import bitsandbytes as bnb
    import torch

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or name == "lm_head":
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=compute_dtype, quant_type="nf4", compress_statistics=True,
                                  device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                         compress_statistics=True).to(child.weight.device)  # quantizes here
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, q)
            count += 1
    model.is_loaded_in_4bit = True  # what peft reads to prepare and wrap a 4-bit model
    return count


def step_7b(method: str, fields: dict | None = None, device: str = "cuda") -> dict:
    """One training step of a random-weight model of the full Llama-2-7B shape (or `fields`), made on the device
    in bf16, batch 1 x 512 with checkpointing, through the harness's own preparation and optimizer; its peak beside
    the memory model's for the same workload. On a CPU (the test's small shape) the peak is not read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from peftbench import catalog, tasks
    from peftbench.context import RunContext
    from peftbench.estimate import GIB, estimate_run
    from peftbench.methods import get
    from peftbench.methods.lora import quantized_lora
    from peftbench.training import make_optimizer, optimizer_name

    config = dict(catalog.resolve("llama-2-7b").config) if fields is None else dict(fields)
    cfg = AutoConfig.for_model(config.pop("model_type"), **config)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    settings = {"method": method, **({"ranks": [16], "target_modules": targets} if method in ("lora", "qlora") else {})}
    resolved = {"model": {"name": "llama-2-7b", "task": "causal_lm"},
                "training": {"batch_size": 1, "max_length": 512, "precision": "bf16", "gradient_checkpointing": True,
                             "device": device}}
    cuda = device == "cuda"
    predicted = estimate_run(resolved, method, settings, config=dict(catalog.resolve("llama-2-7b").config)
                             if fields is None else dict(fields), device=device).peak_gib
    if cuda:
        free = torch.cuda.mem_get_info()[0] / GIB
        if predicted > 0.9 * free:
            return {"ok": True, "skipped": f"predicted {predicted:.1f} GiB, {free:.1f} GiB free",
                    "predicted_gib": predicted}
        torch.cuda.empty_cache()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    if method == "qlora":
        quantize_nf4(model, torch.bfloat16)
        if cuda:
            torch.cuda.empty_cache()  # the bf16 weights the NF4 copies were made from are gone
    if cuda:
        torch.cuda.reset_peak_memory_stats()  # the peak from here: what a 4-bit load would hold (no bf16 copy)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ctx = RunContext(task=tasks.get("causal_lm"), device=torch.device(device), precision="bf16",
                     load_dtype=torch.bfloat16, compute_dtype=torch.bfloat16, gradient_checkpointing=True,
                     tokenizer_path="")
    if method == "qlora":
        model = quantized_lora(model, get("qlora").Settings.model_validate(settings), ctx)
    elif method == "lora":
        model = get("lora").prepare(model, get("lora").Settings.model_validate(settings), ctx)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, 1e-5, 0.0)
    ids = torch.randint(0, cfg.vocab_size, (1, 512), device=device)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    out = {"optimizer": optimizer_name(params), "loss": float(loss.detach()), "predicted_gib": predicted,
           "trainable": sum(p.numel() for p in params)}
    if not cuda:
        return {"ok": math.isfinite(out["loss"]), **out}
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() / GIB
    del model, opt, loss
    torch.cuda.empty_cache()
    error = (predicted - measured) / measured
    return {"ok": abs(error) < 0.25 and math.isfinite(out["loss"]), **out, "measured_gib": measured, "error": error}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = ap.parse_args()
    import torch

    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available(), "checks": {}}
    checks = report["checks"]

    def check(name: str, fn, *a) -> None:
        t0 = time.perf_counter()
        try:
            checks[name] = fn(*a)
        except Exception as err:  # noqa: BLE001 - a failed check is recorded, the others still run
            checks[name] = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
        checks[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {'ok' if checks[name]['ok'] else 'FAILED'} ({checks[name]['seconds']} s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        check("cpu", generation, "cpu", "float32")
        qlora_cpu = suite("cpu-qlora", TINY, "cpu", "fp32", [{"method": "qlora", "ranks": [4]}], 4, 32, False)
        check("cpu-qlora-suite", run, qlora_cpu, where, False)
        for method in ("lora", "qlora", "full"):  # the 7B-step code at a small shape: finite loss, no peak read
            check(f"cpu-step-{method}", step_7b, method, SMALL_7B, "cpu")
        if not torch.cuda.is_available():
            report["stopped"] = "no CUDA device: the CPU checks ran, the CUDA checks need a GPU"
            args.out.write_text(json.dumps(report, indent=2, default=str))
            print(f"gpu_check: {report['stopped']} (report: {args.out})")
            return 1 if not all(c["ok"] for c in checks.values()) else 2
        report["gpu"] = torch.cuda.get_device_name(0)
        check("cuda-generation", generation, "cuda", "float32")
        check("cuda-excluded-window", excluded_window)
        check("cuda-suite-bf16", run, suite("wide-bf16", WIDE_LLAMA, "cuda", "bf16", CORE, 4, 512, True), where, True)
        fp16 = [m for m in CORE if m["method"] in ("lora", "qlora")]
        check("cuda-suite-fp16", run, suite("wide-fp16", WIDE_LLAMA, "cuda", "fp16-mixed", fp16, 4, 512, True),
              where, True)
        for method in ("lora", "qlora", "full"):
            check(f"cuda-7b-step-{method}", step_7b, method)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    failed = [name for name, c in checks.items() if not c["ok"]]
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'every check passed'} (report: {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
