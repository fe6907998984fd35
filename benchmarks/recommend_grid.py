"""The recommendation grid for the README: `peftbench recommend` at several budgets and data sizes, one row per
common model size (the same models as `peftbench recommend` without --model). No torch; a second to run:

    python benchmarks/recommend_grid.py                       # 8/16/24/48/80 GiB x 500 and 50,000 examples
    python benchmarks/recommend_grid.py --gpu-gb 12 40 --examples 1000
"""

from __future__ import annotations

import argparse

from peftbench.recommend import SIZE_TABLE, Request, recommend


def cell(rec) -> str:
    if rec.chosen is None:
        return f"none (needs {rec.smallest_budget_gib:.0f})"
    c, w = rec.chosen, rec.chosen.workload
    extras = "".join([f" b{w.batch}", " gc" if w.grad_ckpt else "", " 8-bit" if w.optimizer != "adamw" else ""])
    return f"{c.cand.label.replace(' all-linear', '')}{extras} ({c.peak_gib:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-gb", type=float, nargs="+", default=[8, 16, 24, 48, 80])
    ap.add_argument("--examples", type=int, nargs="+", default=[500, 50_000])
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args()
    for n in args.examples:
        print(f"\n{n:,} examples, seq {args.seq_len}, generation, priority quality. Cell: method (LoRA targets "
              f"all-linear unless named), micro-batch, gc = gradient checkpointing, (predicted peak GiB)\n")
        print("| model | " + " | ".join(f"{g:g} GB" for g in args.gpu_gb) + " |")
        print("|---|" + "---|" * len(args.gpu_gb))
        for size, model in SIZE_TABLE:
            cells = [cell(recommend(Request(gpu_gb=g, examples=n, model=model, seq_len=args.seq_len)))
                     for g in args.gpu_gb]
            print(f"| {size} {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
