"""What a run reports, each figure defined once: its name, label, format, unit and direction. Plain Python, no torch.

Two tables. `METRICS` are the scores a task kind's evaluation computes (a record holds them as data: `eval` and
`base`, metric name -> value), with the offline functions that compute them. `MEASURES` are the measured
quantities of every run (memory, size, time). The results table, the CSV, the summary statistics, `compare`, the
plots and the recommender's ranking all read these definitions: a new metric is one entry here and one line in the
task kind that computes it.

The functions are written out on purpose: `evaluate.load("accuracy")` and friends fetch their scripts from the
hub, which an offline machine cannot reach; these are the textbook definitions (macro F1 = unweighted mean of
per-class F1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A score of the evaluation rows."""

    name: str  # key in a record's `eval` / `base`; CSV columns eval_<name>, base_<name>
    label: str
    fmt: str  # format spec of one value
    higher_is_better: bool
    tasks: tuple[str, ...]  # the task kinds whose evaluation computes it
    description: str
    bounds: tuple[float | None, float | None] = (0.0, None)  # the values it can take: intervals are clipped to them


@dataclass(frozen=True)
class Measure:
    """A measured quantity of a run: a field of the record."""

    name: str  # the record's field
    label: str
    unit: str
    fmt: str
    higher_is_better: bool
    # the same on every repeat of the same run on the same machine (counts, the CPU tensor peak): any change is
    # real, not noise
    exact: bool = False


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("loss", "loss", ".4f", False, ("classification", "causal_lm"),
           "mean cross-entropy on the evaluation rows (causal LM: per target token)"),
    Metric("accuracy", "accuracy", ".3f", True, ("classification",), "share of rows whose argmax is the label",
           (0.0, 1.0)),
    Metric("f1", "F1", ".3f", True, ("classification",), "macro F1: unweighted mean of the per-class F1",
           (0.0, 1.0)),
    Metric("perplexity", "ppl", ",.1f", False, ("causal_lm",), "exp of the mean target-token loss", (1.0, None)),
    Metric("exact_match", "exact match", ".3f", True, ("causal_lm",),
           "share of greedy generations equal to the target, whitespace collapsed", (0.0, 1.0)),
    Metric("rouge_l", "ROUGE-L", ".3f", True, ("causal_lm",),
           "mean over rows of the ROUGE-L F-measure of the greedy generation against the target (the rouge-score "
           "package; lower-cased Unicode words, no stemming); unlike exact match it gives credit for a partly right "
           "answer",
           (0.0, 1.0)),
)}

MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("trainable_params", "trainable", "params", ",.0f", False, exact=True),
    Measure("peak_mem_mib", "peak tensor", "MiB", ",.1f", False, exact=True),
    Measure("est_peak_mib", "estimate", "MiB", ",.1f", False, exact=True),
    Measure("peak_reserved_mib", "peak reserved", "MiB", ",.1f", False),
    Measure("peak_rss_mib", "peak RSS", "MiB", ",.0f", False),
    Measure("train_tokens_per_s", "train", "tok/s", ",.0f", True),
    Measure("train_s", "train time", "s", ",.2f", False),
    Measure("latency_ms_p50", "latency p50", "ms", ".2f", False),
    Measure("latency_ms_p90", "latency p90", "ms", ".2f", False),
    Measure("latency_ms_p50_merged", "latency p50 merged", "ms", ".2f", False),
    Measure("gen_ms_per_token", "generation", "ms/token", ".2f", False),
    Measure("gen_ms_per_token_merged", "generation merged", "ms/token", ".2f", False),
    Measure("prefill_ms", "prefill", "ms", ".2f", False),
    Measure("decode_ms_per_token", "decode", "ms/token", ".2f", False),
    Measure("prefill_ms_merged", "prefill merged", "ms", ".2f", False),
    Measure("decode_ms_per_token_merged", "decode merged", "ms/token", ".2f", False),
    Measure("latency_cv", "latency CV", "", ".3f", False),
    Measure("adapter_size_mb", "adapter", "MB", ",.2f", False, exact=True),
    Measure("wall_s", "wall", "s", ",.1f", False),
)}

# The score a task kind ranks methods by (the recommender, the Pareto plots), best first.
# ROUGE-L for causal LMs: exact match is about 0 for every method on open-ended instruction data (Alpaca, 64 new
# tokens), so it cannot rank them.
PRIMARY = {"classification": "accuracy", "causal_lm": "rouge_l"}


def for_task(task: str) -> list[Metric]:
    """The metrics the task kind's evaluation computes, loss first."""
    return [m for m in METRICS.values() if task in m.tasks]


@dataclass(frozen=True)
class Figure:
    """One number of a run that the summary, the CSV, `compare` and the plots treat alike: a measure, or a score
    after training (`eval_<metric>`) or before it (`base_<metric>`). `key` is its CSV column."""

    key: str
    label: str
    unit: str
    fmt: str
    higher_is_better: bool
    exact: bool  # a repeat of the same seed on the same machine gives the same value (Measure.exact)
    metric: str | None = None  # the score's metric name; None for a measure
    base: bool = False  # the score before training
    bounds: tuple[float | None, float | None] = (0.0, None)  # every measure is a count, a size or a time

    def value(self, record) -> float | None:
        """The figure of one record (a results.RunRecord), None where it has none."""
        if self.metric is not None:
            return record.score(self.metric, base=self.base)
        return getattr(record, self.key)


def figures() -> list[Figure]:
    """Every figure, in the order the CSV summary and `compare` list them: scores after training, the measures,
    then the scores before training."""
    def score(m: Metric, base: bool) -> Figure:
        return Figure(f"{'base' if base else 'eval'}_{m.name}", f"{'base ' if base else ''}{m.label}", "", m.fmt,
                      m.higher_is_better, False, m.name, base, m.bounds)

    measures = [Figure(m.name, m.label, m.unit, m.fmt, m.higher_is_better, m.exact) for m in MEASURES.values()]
    return [score(m, False) for m in METRICS.values()] + measures + [score(m, True) for m in METRICS.values()]


FIGURES: dict[str, Figure] = {f.key: f for f in figures()}


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
    return sum(matches(predictions, references)) / len(references)


def matches(predictions: Sequence[str], references: Sequence[str]) -> list[bool]:
    """Per row: the prediction equals its reference after collapsing whitespace."""
    def norm(s: str) -> str:
        return " ".join(s.split())

    return [norm(p) == norm(r) for p, r in zip(predictions, references, strict=True)]


class _Words:
    """Lower-cased runs of Unicode letters and digits. rouge-score's own tokenizer keeps only [a-z0-9], which
    scores any non-Latin text 0 even when it is generated exactly; on Latin text the two agree."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.lower())


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Per row: the ROUGE-L F-measure (longest common subsequence of words) of the prediction against its reference,
    by Google's rouge-score package, the implementation `evaluate`'s "rouge" wraps (which itself loads from the
    hub), with a Unicode word tokenizer (_Words). 1 when both have no words, 0 when one has none."""
    from rouge_score import rouge_scorer

    words = _Words()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=words)
    return [1.0 if not words.tokenize(p) and not words.tokenize(r) else scorer.score(r, p)["rougeL"].fmeasure
            for p, r in zip(predictions, references, strict=True)]
