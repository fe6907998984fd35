"""How steady a latency measurement is: the coefficient of variation (CV) of the timed passes, as records report it.

The same measurement as a run's `latency_ms_p50` and `latency_cv` (peftbench/measure.py: `time_repeated`,
`variation`): MiniLM-L6 with a LoRA r8 adapter in eval mode under inference_mode, a fixed batch of
`--batch` x `--seq-len` tokens of real text, `--warmup` untimed passes, then `--repeats` timed passes; done
`--rounds` times in one process. Reports each round's CV and p50, the median CV, and the CV of the p50 across
rounds (what a second run of the same suite would see). Run by hand on an idle machine, not by pytest; a number
from a loaded machine says so (the load average is printed beside it):

    python benchmarks/latency_cv.py --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from peftbench.builtin_tasks import TASKS
    from peftbench.measure import percentile, time_repeated, variation
    from peftbench.models import minilm_path

    torch.manual_seed(0)
    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    text = " ".join(r["text"] for r in TASKS["sentiment-negation"].generate(64, 0))
    batch = tok([text] * args.batch, truncation=True, max_length=args.seq_len, padding="max_length",
                return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                             target_modules=["query", "value"])).eval()
    load_before = os.getloadavg()
    rounds = []
    with torch.inference_mode():
        for _ in range(args.rounds):
            times = time_repeated(lambda: model(**batch), torch.device("cpu"), args.warmup, args.repeats)
            rounds.append({"p50_ms": percentile(times, 50), "cv": variation(times)})
    p50s = [r["p50_ms"] for r in rounds]
    report = {
        "setting": {**vars(args), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "load_average_1_5_15_before": load_before,
        "load_average_1_5_15_after": os.getloadavg(),
        "rounds": rounds,
        "median_cv": statistics.median(r["cv"] for r in rounds),
        "max_cv": max(r["cv"] for r in rounds),
        "cv_of_p50_across_rounds": variation(p50s),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
