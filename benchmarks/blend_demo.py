"""A blend of two adapters trained on two built-in tasks, scored on both at several weights (README, issue note).

Trains LoRA on word-copy and on word-reverse (the same tiny Llama-style model built from a config, random
weights, no download) with `peftbench run`, keeping the adapters, then runs `peftbench blend` over a grid of
weights. Run by hand; about 6 minutes on 2 CPU cores:

    python benchmarks/blend_demo.py --out results/blend-demo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import sweep

WEIGHTS = ["1,0", "0,1", "0.5,0.5", "0.7,0.8", "1,1", "1.5,0.5"]


def suite_for(task: str) -> dict:
    return {
        "name": f"blend-{task}",
        "description": f"LoRA r16 on every linear layer of the tiny Llama, trained on {task} "
                       "(benchmarks/blend_demo.py)",
        "model": {"name": "builtin:tiny-llama", "task": "causal_lm"},
        "dataset": {"builtin": task, "train_examples": 2000, "eval_examples": 64},
        "training": {"steps": 400, "batch_size": 16, "max_length": 32, "precision": "fp32", "device": "cpu",
                     "seed": 0},
        "evaluation": {"batch_size": 64, "max_new_tokens": 8},
        "latency": {"batch_size": 1, "seq_len": 16, "warmup": 0, "repeats": 1, "gen_new_tokens": 1, "gen_repeats": 1},
        "runner": {"timeout_s": 1800, "save_adapters": True},
        "methods": [{"method": "lora", "ranks": [16], "target_modules": "all-linear", "learning_rate": 1e-2}],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=sweep.REPO / "results" / "blend-demo")
    args = ap.parse_args()
    sweep.run_suites(args.out, [suite_for("word-copy"), suite_for("word-reverse")])
    adapters = []
    for task, name in (("word-copy", "copy"), ("word-reverse", "reverse")):
        run = sorted((args.out / "runs").glob(f"blend-{task}-*"))[-1]
        adapters += ["--adapter", f"{name}={run / 'adapters' / 'lora-r16'}"]
    cmd = [sys.executable, "-c", "from peftbench.cli import main; main()", "blend", *adapters]
    for w in WEIGHTS:
        cmd += ["--weights", w]
    subprocess.run(cmd, cwd=sweep.REPO, check=True)


if __name__ == "__main__":
    main()
