"""Estimator vs measurement on the CPU: run every method of a ~100M-parameter Llama-style model (built from a
config, random weights, no download) at several batch sizes and sequence lengths with `peftbench run`, then
compare each record's `est_peak_mib` (the analytic memory model) with its measured `peak_mem_mib` (torch.profiler
live-tensor peak over load + the first training steps).

Run by hand (not by pytest); about an hour on 2 CPU cores:

    python benchmarks/calibrate.py run      --out results/calibration     # measure (one suite per shape)
    python benchmarks/calibrate.py compare  results/calibration           # table + error statistics

`compare` recomputes the estimate from each record's resolved suite, so a changed memory model can be checked
against old measurements without running them again.
"""

from __future__ import annotations

import json
from pathlib import Path

import sweep

# ~99M parameters: 12 layers, h=768, SwiGLU i=2048, GQA 12 query / 4 KV heads, MiniLM WordPiece vocab (30,522).
MODEL = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
             num_key_value_heads=4, max_position_embeddings=1024)

METHODS = [
    {"method": "full"},
    {"method": "lora", "ranks": [8]},  # peft's default targets for Llama: q_proj, v_proj
    {"method": "lora", "ranks": [16], "target_modules": "all-linear"},
    {"method": "qlora", "ranks": [8], "target_modules": "all-linear"},
    {"method": "prefix", "num_virtual_tokens": 16},
    {"method": "prompt", "num_virtual_tokens": 16},
    {"method": "ia3"},
]

# (batch, seq_len, precision, gradient checkpointing): equal token counts at different lengths separate the
# per-token terms from the per-sequence (attention) terms.
SHAPES = [
    (2, 128, "fp32", False),
    (4, 128, "fp32", False),
    (2, 256, "fp32", False),
    (1, 512, "fp32", False),
    (4, 128, "fp32", True),
    (1, 64, "bf16", False),  # bf16 matmuls are slow on CPUs without bf16 units: a short shape
]


def suite_for(batch: int, seq: int, precision: str, gc: bool) -> dict:
    # lora on q,v and lora on all linears differ in rank too, so their runs are named lora-r8 and lora-r16.
    methods = [dict(m) for m in METHODS]
    for m in methods:  # peft's prefix tuning cannot checkpoint: its entry runs without
        if gc and m["method"] == "prefix":
            m["gradient_checkpointing"] = False
    return {
        "name": f"calib-b{batch}-s{seq}-{precision}{'-gc' if gc else ''}",
        "description": "estimator calibration (benchmarks/calibrate.py)",
        "model": {"name": "builtin:tiny-llama", "task": "causal_lm", "config_overrides": MODEL},
        "dataset": {"builtin": "word-copy", "train_examples": 64, "eval_examples": 8},
        "training": {"steps": 3, "batch_size": batch, "max_length": seq, "precision": precision,
                     "gradient_checkpointing": gc, "device": "cpu", "seed": 0, "warmup_timing_steps": 1,
                     "memory_profile_steps": 2, "learning_rate": 1e-4},
        "evaluation": {"batch_size": 8, "max_new_tokens": 1},
        "latency": {"batch_size": 1, "seq_len": 16, "warmup": 0, "repeats": 1, "gen_new_tokens": 1, "gen_repeats": 1},
        "runner": {"timeout_s": 1800},
        "methods": methods,
    }


def cmd_compare(results: Path) -> None:
    from peftbench.estimate import estimate_run
    from peftbench.results import ResultStore

    rows = []
    for run_dir in sorted((results / "runs").iterdir()):
        store = ResultStore(run_dir)
        manifest = store.manifest()
        for rec in store.records():
            if rec.status != "ok" or rec.peak_mem_mib is None:
                continue
            est = estimate_run(manifest["resolved_suite"], rec.method, rec.settings, device="cpu")
            err = 100 * (est.peak_mib - rec.peak_mem_mib) / rec.peak_mem_mib
            rows.append((manifest["resolved_suite"]["name"], rec.run, rec.peak_mem_mib, est.peak_mib, err))
    print(f"{'suite':28} {'run':10} {'measured MiB':>12} {'estimate MiB':>12} {'error %':>8}")
    for r in rows:
        print(f"{r[0]:28} {r[1]:10} {r[2]:12.1f} {r[3]:12.1f} {r[4]:8.1f}")
    errs = [abs(r[4]) for r in rows]
    if errs:
        print(f"\n{len(errs)} runs: mean |error| {sum(errs) / len(errs):.1f}%, max |error| {max(errs):.1f}%")
    print(json.dumps({"n": len(errs), "mean_abs_pct": sum(errs) / max(len(errs), 1),
                      "max_abs_pct": max(errs, default=0)}))


if __name__ == "__main__":
    sweep.main(__doc__, "calibration", lambda: [suite_for(*shape) for shape in SHAPES], cmd_compare)
