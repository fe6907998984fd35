"""Evaluation metrics that work offline. Plain Python, no torch.

Written by hand on purpose: `evaluate.load("accuracy")` and friends fetch their scripts from the hub, which
an offline machine cannot reach; these are the textbook definitions (macro F1 = unweighted mean of per-class F1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    if not labels:
        raise ValueError("no labels")
    return sum(int(p == y) for p, y in zip(preds, labels, strict=True)) / len(labels)


def macro_f1(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Mean over the classes present in labels or predictions of 2·TP / (2·TP + FP + FN)."""
    classes = sorted(set(labels) | set(preds))
    scores = []
    for c in classes:
        tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == c and y == c)
        fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == c and y != c)
        fn = sum(1 for p, y in zip(preds, labels, strict=True) if p != c and y == c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def perplexity(mean_token_loss: float) -> float:
    """exp of the mean negative log-likelihood per target token (inf past float range)."""
    try:
        return math.exp(mean_token_loss)
    except OverflowError:
        return math.inf


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after collapsing whitespace."""
    if not references:
        raise ValueError("no references")
    def norm(s: str) -> str:
        return " ".join(s.split())

    return sum(int(norm(p) == norm(r)) for p, r in zip(predictions, references, strict=True)) / len(references)
