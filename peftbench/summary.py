"""Per-run summaries of a results folder: every figure's mean and 95% interval over the run's seeds, the bootstrap
over evaluation rows for one seed, and which runs are within the noise of the best. No torch import.

The table, the CSV summary, the plots and the recommender read runs through this module, so a run of three
seeds is one point with an interval everywhere, and the statistics are those of peftbench/stats.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from . import stats, tasks
from .metrics import FIGURES, METRICS, PRIMARY, Figure
from .results import RunRecord
from .stats import Difference, Interval


def task_of(records: list[RunRecord]) -> str | None:
    """The task kind whose evaluation computed these records' scores (the metric registry says which metric
    belongs to which kind), or None when no record has scores."""
    names = {m for r in records for m in r.eval}
    for task in PRIMARY:
        if names and all(task in METRICS[m].tasks for m in names if m in METRICS):
            return task
    return None


def row_scorer(task: str | None, record: RunRecord, metric: str) -> Callable[[list[int]], float] | None:
    """score(row indices) of one metric on a record's evaluation rows (the task kind's `score_rows`), or None when
    the record kept no per-row data (records written before 2026-12-02)."""
    if task is None or not record.eval_per_row or metric not in record.eval:
        return None
    kind = tasks.get(task)
    return lambda rows: kind.score_rows(record.eval_per_row, rows)[metric]


def n_eval_rows(record: RunRecord) -> int:
    return len(next(iter(record.eval_per_row.values()), []))


@dataclass
class RunSummary:
    """One run of the suite over its seeds."""

    run: str
    method: str
    ok: list[RunRecord]  # its ok records, by seed
    not_ok: list[RunRecord]  # its failed, oom and timed-out seeds
    figures: dict[str, Interval] = field(default_factory=dict)  # figure key -> mean and t interval over ok seeds
    rows: dict[str, Interval] = field(default_factory=dict)  # eval_<metric> -> bootstrap over the first seed's rows
    # against the best run by the primary score (versus_best), set by summarize(rows=True): computed once, for
    # the table, the CSV and the page alike
    is_best: bool = False
    versus: Difference | None = None

    @property
    def first(self) -> RunRecord:
        """The record that stands for the run where one is needed (settings, notes): its first ok seed."""
        return (self.ok or self.not_ok)[0]

    @property
    def status(self) -> str:
        if self.ok and not self.not_ok:
            return "ok"
        if self.ok:
            return f"ok {len(self.ok)}/{len(self.ok) + len(self.not_ok)}"
        return self.not_ok[-1].status

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.ok]

    def mean(self, key: str) -> float | None:
        iv = self.figures.get(key)
        return None if iv is None else iv.mean

    def by_seed(self, fig: Figure) -> dict[int, float]:
        return {(r.seed if r.seed is not None else -1): v for r in self.ok if (v := fig.value(r)) is not None}


def summarize(records: list[RunRecord], task: str | None = None, rows: bool = True) -> list[RunSummary]:
    """One summary per run, in the records' order (ResultStore.records: the suite's run order)."""
    task = task or task_of(records)
    grouped: dict[str, list[RunRecord]] = {}
    for r in records:
        grouped.setdefault(r.run, []).append(r)
    out = []
    for run, recs in grouped.items():
        s = RunSummary(run, recs[0].method, [r for r in recs if r.status == "ok"],
                       [r for r in recs if r.status != "ok"])
        for key, fig in FIGURES.items():
            iv = stats.t_interval([v for r in s.ok if (v := fig.value(r)) is not None])
            if iv is not None:
                s.figures[key] = stats.clip(iv, *fig.bounds)
        if rows and s.ok and task is not None and s.ok[0].eval_per_row:
            first = s.ok[0]
            kind = tasks.get(task)

            def scores(idx: list[int], first=first, kind=kind) -> dict[str, float]:  # the first seed's metrics
                return {m: v for m, v in kind.score_rows(first.eval_per_row, idx).items() if m in first.eval}

            s.rows = {f"eval_{m}": iv for m, iv in stats.bootstrap_rows_many(scores, n_eval_rows(first)).items()}
        out.append(s)
    fig = primary_figure(out, task) if rows else None
    if fig is not None:
        top = best(out, fig)
        diffs = versus_best(out, fig, task)
        for s in out:
            s.is_best, s.versus = s is top, diffs.get(s.run)
    return out


def primary_figure(summaries: list[RunSummary], task: str | None = None) -> Figure | None:
    """The score the runs are ranked by (metrics.PRIMARY for the task kind), when the runs have it."""
    task = task or task_of([r for s in summaries for r in s.ok])
    fig = FIGURES.get(f"eval_{PRIMARY[task]}") if task in PRIMARY else None
    return fig if fig is not None and any(s.mean(fig.key) is not None for s in summaries) else None


def best(summaries: list[RunSummary], fig: Figure) -> RunSummary | None:
    have = [s for s in summaries if s.mean(fig.key) is not None]
    if not have:
        return None
    sign = 1 if fig.higher_is_better else -1
    return max(have, key=lambda s: sign * s.mean(fig.key))


def paired_figure(fig: Figure, a: list[RunRecord], b: list[RunRecord], task: str | None
                  ) -> tuple[stats.Paired, float, float] | None:
    """(a - b for one figure, a's mean, b's mean) over the seeds the two sets of ok records share, before the
    correction for many comparisons; None when either has no value. A figure that repeats exactly is compared as
    such (any change is real); with two or more seeds in common, the paired t test; when the seeds say nothing
    (one in common, or differences without spread), a score is paired over the evaluation rows of the first
    common seed (both sides on the same bootstrap resamples)."""
    va = {r.seed: v for r in a if (v := fig.value(r)) is not None and math.isfinite(v)}
    vb = {r.seed: v for r in b if (v := fig.value(r)) is not None and math.isfinite(v)}
    if not va or not vb:
        return None
    common = sorted(va.keys() & vb.keys(), key=lambda k: (k is None, k))
    if not common:  # nothing to pair: the means of each, and nothing can be said
        mean_a, mean_b = math.fsum(va.values()) / len(va), math.fsum(vb.values()) / len(vb)
        return stats.Paired(mean_a - mean_b, 0, "t", None), mean_a, mean_b
    mean_a, mean_b = (math.fsum(v[k] for k in common) / len(common) for v in (va, vb))
    if fig.exact:
        return stats.exact_change([va[k] for k in common], [vb[k] for k in common]), mean_a, mean_b
    paired = stats.paired_t([va[k] - vb[k] for k in common])
    if paired.method == "t" and paired.p is None and fig.metric is not None and not fig.base:
        ra = next(r for r in a if r.seed == common[0])
        rb = next(r for r in b if r.seed == common[0])
        sa, sb = row_scorer(task, ra, fig.metric), row_scorer(task, rb, fig.metric)
        if sa and sb and n_eval_rows(ra) == n_eval_rows(rb) and ra.eval_rows == rb.eval_rows:
            paired = stats.paired_bootstrap(sa, sb, n_eval_rows(ra)) or paired
    return paired, mean_a, mean_b


def versus_best(summaries: list[RunSummary], fig: Figure, task: str | None = None) -> dict[str, Difference]:
    """Every run with the figure, minus the best run (paired_figure), corrected across those comparisons
    (stats.correct)."""
    top = best(summaries, fig)
    if top is None:
        return {}
    task = task or task_of([r for s in summaries for r in s.ok])
    family: dict[str, stats.Paired] = {}
    for s in summaries:
        if s is not top and s.mean(fig.key) is not None:
            found = paired_figure(fig, s.ok, top.ok, task)
            if found is not None:
                family[s.run] = found[0]
    return stats.correct(family)


def pareto(points: list[tuple[float, float]], higher_x: bool = False, higher_y: bool = True) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on one): the front of
    a score against a cost. Written here because no library of the stack has it; a handful of points, O(n²)."""
    def better_eq(a: float, b: float, higher: bool) -> bool:
        return a >= b if higher else a <= b

    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            better_eq(ox, x, higher_x) and better_eq(oy, y, higher_y) and (ox, oy) != (x, y)
            for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


# ---- the summary as a table: summary.csv, report --csv / --json / --parquet ------------------------------------

SUMMARY_HEAD = ["run", "method", "status", "n_seeds", "seeds", "total_params", "trainable_pct", "device",
                "precision", "optimizer", "world_size", "strategy"]
SCALING = ["scaling_vs", "scaling_speedup", "scaling_efficiency"]
VERSUS = ["vs_best", "vs_best_diff", "vs_best_lo", "vs_best_hi", "vs_best_level", "vs_best_p_adjusted",
          "vs_best_verdict"]


def summary_columns() -> list[str]:
    """Every column of the summary, in order (docs/columns.md, "summary.csv")."""
    cols = list(SUMMARY_HEAD)
    for key in FIGURES:
        cols += [key, f"{key}_lo", f"{key}_hi"]
    cols += [f"eval_{m}_rows_{end}" for m in METRICS for end in ("lo", "hi")]
    return cols + SCALING + VERSUS


@dataclass(frozen=True)
class Scaling:
    """A multi-process run's throughput against the same run in one process (docs/distributed.md)."""

    vs: str  # the one-process run
    speedup: float  # train_tokens_per_s (all ranks) / the one-process run's
    efficiency: float  # speedup / how many times the one-process run's hardware it had (GPUs: world_size; CPU: 1)


def scaling(s: RunSummary, runs: list[RunSummary]) -> Scaling | None:
    """The scaling of multi-process run `s` against the one-process run of the same method and settings in
    `runs` (means over seeds), or None without one. On GPUs each rank has a GPU of its own and the one-process
    run one GPU, so the efficiency is speedup / world_size; on a CPU both share the same cores (each rank has
    cores / world_size threads, the one-process run all of them), so it is the speedup itself."""
    first = s.first
    if first.world_size <= 1 or s.mean("train_tokens_per_s") is None:
        return None

    def same(r: RunRecord) -> dict:
        return {k: v for k, v in r.settings.items() if k != "launch"}

    for o in runs:
        if o.first.world_size == 1 and o.method == s.method and same(o.first) == same(first):
            base = o.mean("train_tokens_per_s")
            if base:
                speedup = s.mean("train_tokens_per_s") / base
                devices = first.world_size if first.device.startswith("cuda") else 1
                return Scaling(o.run, speedup, speedup / devices)
    return None


def summary_rows(runs: list[RunSummary]) -> list[dict]:
    """One dict per run with summary_columns(): each figure's mean over the ok seeds and its 95% t interval (empty
    for one seed), the bootstrap over the first seed's evaluation rows, and the difference to the best run by the
    primary score."""
    fig = primary_figure(runs)
    out = []
    for s in runs:
        r = s.first
        row = {"run": s.run, "method": s.method, "status": s.status, "n_seeds": len(s.ok),
               "seeds": " ".join(str(x) for x in s.seeds if x is not None), "total_params": r.total_params,
               "trainable_pct": r.trainable_pct, "device": r.device, "precision": r.precision,
               "optimizer": r.optimizer, "world_size": r.world_size, "strategy": r.strategy}
        sc = scaling(s, runs)
        row.update(zip(SCALING, (sc.vs, sc.speedup, sc.efficiency) if sc else (None,) * 3, strict=True))
        for key in FIGURES:
            iv = s.figures.get(key)
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = (iv.mean, iv.lo, iv.hi) if iv else (None, None, None)
        for m in METRICS:
            iv = s.rows.get(f"eval_{m}")
            row[f"eval_{m}_rows_lo"], row[f"eval_{m}_rows_hi"] = (iv.lo, iv.hi) if iv else (None, None)
        d = s.versus
        row.update(dict.fromkeys(VERSUS))
        if fig is not None and (d is not None or s.is_best):
            row["vs_best"] = fig.key
            if s.is_best:
                row["vs_best_verdict"] = "best"
            else:
                row.update(vs_best_diff=d.mean if math.isfinite(d.mean) else None, vs_best_lo=d.lo, vs_best_hi=d.hi,
                           vs_best_level=d.level, vs_best_p_adjusted=d.p_adjusted, vs_best_verdict=d.verdict)
        out.append(row)
    return out


def summary_frame(runs: list[RunSummary]):
    """summary_rows as a pandas DataFrame with every summary column."""
    import pandas as pd  # not at module level: the worker never needs pandas

    frame = pd.DataFrame(summary_rows(runs), columns=summary_columns())
    return frame.astype({"n_seeds": "Int64", "total_params": "Int64", "world_size": "Int64"})


def export(records: list[RunRecord], runs: list[RunSummary], per_seed: bool, **paths) -> list[str]:
    """Write the summary rows (or with `per_seed` the records) to each of paths csv=, json=, parquet= that is
    given; return a line per file written."""
    from .results import export_json, to_frame

    frame = to_frame(records) if per_seed else summary_frame(runs)
    what = f"{len(frame)} {'records' if per_seed else 'runs'}"
    lines = []
    for kind, path in paths.items():
        if path is None:
            continue
        if kind == "csv":
            frame.to_csv(path, index=False)
        elif kind == "json" and per_seed:
            export_json(records, path)  # the records themselves, nested settings and scores included
        elif kind == "json":
            frame.to_json(path, orient="records", indent=2)
        elif kind == "parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(kind)
        lines.append(f"wrote {path} ({what})")
    return lines
