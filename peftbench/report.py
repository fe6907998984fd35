"""Rich tables of run records, for the terminal. No torch import."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .metrics import FIGURES, METRICS, PRIMARY, Figure, Metric
from .results import RunRecord
from .stats import FDR, LEVEL, Interval
from .summary import RunSummary, primary_figure, scaling, summarize

STATUS_STYLE = {"ok": "green", "failed": "red", "oom": "magenta", "timeout": "yellow", "skipped": "dim"}


def _num(v: float | int | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _iv(iv: Interval | None, fmt: str) -> str:
    """A mean, with ± the half-width of its 95% interval when there is one."""
    if iv is None:
        return "-"
    hw = iv.half_width
    if iv.n < 2 or hw is None or iv.lo == iv.hi:  # one seed, or every seed the same (a count, a CPU peak)
        return format(iv.mean, fmt)
    if not math.isclose(iv.mean - iv.lo, iv.hi - iv.mean, rel_tol=1e-9, abs_tol=1e-12):  # cut at a bound
        return f"{format(iv.mean, fmt)} [{format(iv.lo, fmt)}, {format(iv.hi, fmt)}]"
    return f"{format(iv.mean, fmt)} ± {format(hw, fmt)}"


def _fig(key: str) -> Callable[[RunSummary], str]:
    fig = FIGURES[key]
    return lambda s: _iv(s.figures.get(key), fig.fmt)


def _params(s: RunSummary) -> str:
    r = s.first
    if r.trainable_params is None:
        return "-"
    n = r.trainable_params
    human = f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}K" if n >= 1e3 else str(n))
    return f"{human} ({r.trainable_pct:.2f}%)" if r.trainable_pct is not None else human


def _estimate(s: RunSummary) -> str:
    est, peak = s.mean("est_peak_mib"), s.mean("peak_mem_mib")
    if est is None:
        return "-"
    return f"{est:,.1f}" if not peak else f"{est:,.1f} ({100 * (est - peak) / peak:+.0f}%)"


def _latency(s: RunSummary) -> str:
    if "latency_ms_p50" not in s.figures:
        return "-"
    merged = s.figures.get("latency_ms_p50_merged")
    return _iv(s.figures["latency_ms_p50"], ".2f") + (f" ({_iv(merged, '.2f')})" if merged is not None else "")


def _score(m: Metric) -> Callable[[RunSummary], str]:
    def cell(s: RunSummary) -> str:
        final = s.figures.get(f"eval_{m.name}")
        if final is None:
            return "-"
        base = s.figures.get(f"base_{m.name}")
        return f"{format(base.mean, m.fmt)} → {_iv(final, m.fmt)}" if base is not None else _iv(final, m.fmt)
    return cell


def _rows(key: str) -> Callable[[RunSummary], str]:
    fmt = FIGURES[key].fmt

    def cell(s: RunSummary) -> str:
        iv = s.rows.get(key)
        return "-" if iv is None or iv.lo is None else f"[{format(iv.lo, fmt)}, {format(iv.hi, fmt)}]"
    return cell


def _versus(fig: Figure) -> Callable[[RunSummary], str]:
    def cell(s: RunSummary) -> str:
        if s.is_best:
            return "[bold]best[/]"
        d = s.versus
        if d is None:
            return "-"
        if d.verdict == "same" or not math.isfinite(d.mean):
            return d.verdict
        style = "" if d.beyond_noise else "dim"
        text = f"{format(d.mean, '+' + fig.fmt.lstrip(','))} {d.verdict}"
        return f"[{style}]{text}[/]" if style else text
    return cell


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[RunSummary], str]
    priority: int  # 0: always shown; higher numbers are the first to go in a narrow terminal
    right: bool = True


def table_columns(runs: list[RunSummary]) -> list[Column]:
    """The table's columns in display order, each with its priority: which run it is and how it went first, then
    the scores, then memory, size and time."""
    cols = [
        Column("run", lambda s: s.run, 0, right=False),
        Column("status", lambda s: f"[{STATUS_STYLE.get(s.status.split()[0], '')}]{s.status}[/]", 0, right=False),
    ]
    if any(len(s.ok) > 1 for s in runs):
        cols.append(Column("seeds", lambda s: str(len(s.ok)), 0))
    cols += [
        Column("trainable (%)", _params, 3),
        Column("peak tensor MiB", _fig("peak_mem_mib"), 2),
        Column("estimate MiB (err)", _estimate, 6),
        Column("peak RSS MiB", _fig("peak_rss_mib"), 9),
        Column("train tok/s", _fig("train_tokens_per_s"), 5),
        Column("latency p50 ms (merged)", _latency, 4),
    ]
    cols.append(Column("latency CV", lambda s: _num(s.mean("latency_cv"), ".1%"), 9))
    if any("decode_ms_per_token" in s.figures for s in runs):  # generation, split: prompt prefill, then per token
        cols.append(Column("prefill ms", _fig("prefill_ms"), 7))
        cols.append(Column("decode ms/tok", _fig("decode_ms_per_token"), 7))
    elif any("gen_ms_per_token" in s.figures for s in runs):  # records from before the split
        cols.append(Column("gen ms/tok", _fig("gen_ms_per_token"), 7))
    cols.append(Column("adapter MB", _fig("adapter_size_mb"), 8))
    for m in METRICS.values():  # every score the runs have but the loss, as the metric registry defines it
        if m.name != "loss" and any(f"eval_{m.name}" in s.figures for s in runs):
            important = m.name in PRIMARY.values() or m.name == "perplexity"
            cols.append(Column(f"{m.label} base → eval", _score(m), 1 if important else 7))
    fig = primary_figure(runs)
    if fig is not None:
        if any(fig.key in s.rows for s in runs):
            cols.append(Column(f"{fig.label} 95% over rows", _rows(fig.key), 6))
        if sum(s.mean(fig.key) is not None for s in runs) > 1:  # one run is best of nothing
            cols.append(Column(f"vs best {fig.label}", _versus(fig), 1))
    return cols


def _fit(cols: list[Column], runs: list[RunSummary], width: int | None) -> tuple[list[Column], list[Column]]:
    """(shown, left out): the most important columns that fit in `width` characters without squeezing any (rich
    would otherwise shrink the run names to nothing); all of them when the width is unknown."""
    if width is None:
        return cols, []

    def need(c: Column) -> int:  # the longest cell or header, plus the borders and padding rich puts around it
        cells = [Text.from_markup(c.cell(s)).cell_len for s in runs]
        return max([len(c.header), *cells]) + 3

    shown, used = [], 1
    for c in sorted(cols, key=lambda c: c.priority):  # stable: equal priorities keep their display order
        if c.priority == 0 or used + need(c) <= width:
            shown.append(c)
            used += need(c)
    return [c for c in cols if c in shown], [c for c in cols if c not in shown]


def summary_table(runs: list[RunSummary], title: str = "", width: int | None = None) -> tuple[Table, list[str]]:
    """One row per run (over its seeds) with the CSV's most-read columns (docs/columns.md), as many as fit in
    `width`; and the headers of the columns left out."""
    shown, left_out = _fit(table_columns(runs), runs, width)
    table = Table(title=title or None, header_style="bold", title_justify="left")
    for c in shown:
        table.add_column(c.header, justify="right" if c.right else "left", no_wrap=True)
    for s in runs:
        table.add_row(*(c.cell(s) for c in shown))
    return table, [c.header for c in left_out]


def records_table(records: list[RunRecord], title: str = "", width: int | None = None) -> tuple[Table, list[str]]:
    """summary_table of the records' runs."""
    return summary_table(summarize(records), title, width)


def how_sure(runs: list[RunSummary]) -> str:
    """What the ± , the row intervals and the verdicts mean, for the lines under a table."""
    parts = []
    if any(len(s.ok) > 1 for s in runs):
        parts.append(f"a ± b: mean over the seeds ± half-width of the {LEVEL:.0%} Student-t interval (a [lo, hi]: "
                     "the interval cut at a bound, e.g. an accuracy of 1)")
    if any(s.rows for s in runs):
        parts.append(f"over rows: {LEVEL:.0%} percentile bootstrap over the evaluation rows of the first seed")
    fig = primary_figure(runs)
    if fig is not None and len(runs) > 1:
        parts.append(f"vs best: difference to the best run's {fig.label}, paired by seed (with one seed: over the "
                     f"evaluation rows), Benjamini-Hochberg at FDR {FDR:g}; within noise = its interval holds 0")
    return "; ".join(parts)


def _log(logs: Path | None, r: RunRecord) -> str:
    if logs is None:
        return ""
    for name in (f"{r.run}@s{r.seed}.log", f"{r.run}.log"):
        if (logs / name).is_file():
            return f" (log: {logs / name})"
    return ""


def print_records(records: list[RunRecord], console: Console | None = None, title: str = "",
                  lock_note: str | None = None, unreadable: str | None = None, logs: Path | None = None,
                  runs: list[RunSummary] | None = None) -> None:
    """The table, every failed run's error, what peak memory counts and what the intervals are, `lock_note`
    (environment.lock_note) and the files of the folder that could not be read."""
    console = console or Console()
    runs = runs if runs is not None else summarize(records)  # the caller's, when it has them already
    table, left_out = summary_table(runs, title, console.width)
    console.print(table)
    if left_out:
        console.print(f"not shown at this width ({console.width} columns): {', '.join(left_out)}; every column is "
                      "in summary.csv (peftbench report DIR --csv FILE)", style="dim", highlight=False)
    seeded = any(len(s.ok) + len(s.not_ok) > 1 for s in runs)
    for r in records:
        if r.status != "ok" and r.error:
            name = f"{r.run}@s{r.seed}" if seeded and r.seed is not None else r.run
            console.print(f"[bold]{name}[/]: {r.status}: {r.error}{_log(logs, r)}", highlight=False)
    if records:
        kinds = sorted({r.peak_mem_kind for r in records if r.peak_mem_kind})
        if kinds:
            console.print(f"peak tensor memory: {'; '.join(kinds)}. peak RSS: whole worker process. train tok/s: "
                          "non-padding tokens of batches padded to max_length.", style="dim")
    for line in launched_lines(runs):
        console.print(line, highlight=False)
    sure = how_sure(runs)
    if sure:
        console.print(sure, style="dim", highlight=False, markup=False)
    if lock_note:
        console.print(f"note: {lock_note}", style="yellow", highlight=False)
    if unreadable:
        console.print(f"note: {unreadable}", style="yellow", highlight=False)


def launched_lines(runs: list[RunSummary]) -> list[str]:
    """A line per multi-process run: its ranks, each rank's peak, throughput in all and per process, and its
    scaling against the one-process run of the same settings (summary.scaling)."""
    out = []
    for s in runs:
        r = s.first
        if r.world_size <= 1 or not s.ok:
            continue
        line = f"{s.run}: {r.world_size} processes ({r.strategy})"
        if r.peak_mem_mib_ranks:
            line += f", peak tensor MiB per rank {' / '.join(f'{v:,.1f}' for v in r.peak_mem_mib_ranks)}"
        tps = s.mean("train_tokens_per_s")  # over the seeds
        if tps is not None:
            line += f", {tps:,.0f} tok/s over all ranks ({tps / r.world_size:,.0f} per process)"
        sc = scaling(s, runs)
        if sc is not None:
            line += f", {sc.speedup:.2f}x {sc.vs} (scaling efficiency {sc.efficiency:.2f})"
        out.append(line + ("; ranks in sync" if r.ranks_in_sync else ""))
    return out


def print_estimate(est, title: str, console: Console) -> None:
    """The memory model's breakdown of one estimate (component, GiB, what it holds) and its peak."""
    from .estimate import COMPONENTS, FORMULAS, GIB

    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("what it holds")
    for name, value in est.breakdown.items():
        table.add_row(name, f"{value / GIB:,.2f}", COMPONENTS[name])
    console.print(table)
    console.print(f"trainable parameters: {est.trainable_params:,} of {est.total_params:,} "
                  f"({100 * est.trainable_params / est.total_params:.3f}%)", highlight=False)
    console.print(f"[bold]peak (PyTorch allocator): {est.peak_gib:,.2f} GiB[/] = {FORMULAS[est.formula]}",
                  highlight=False)
    if est.cuda_context_bytes:
        ctx = est.cuda_context_bytes / GIB
        console.print(f"CUDA context ~{ctx:.2f} GiB (outside the allocator): the GPU needs about "
                      f"{est.peak_gib + ctx:,.2f} GiB", highlight=False)
    for note in est.notes:
        console.print(f"note: {note}", style="dim", highlight=False)


def plan_table(rows, gpu_gb: float | None, title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for col, right in (("run", False), ("trainable", True), ("total", True), ("peak GiB", True),
                       ("need GiB (+ CUDA ctx)", True), ("fits", False)):
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    for r in rows:
        fits = "-" if r.fits is None else ("[green]yes[/]" if r.fits else "[red]no[/]")
        table.add_row(r.run, f"{r.trainable_params:,}", f"{r.total_params:,}", f"{r.peak_gib:,.2f}",
                      f"{r.need_gib:,.2f}", fits)
    return table


def print_recommendation(rec, console: Console) -> None:
    """The answer, its configuration, its reasons, then every alternative with the reason it lost."""
    b = rec.budget
    head = (f"{rec.model} ({rec.params / 1e9:.2f}B), {rec.request.examples:,} examples, {rec.request.task}, "
            f"seq {rec.request.seq_len}, budget {b.gpu_gib:g} GiB x {rec.request.gpus} GPU"
            f"{'s' if rec.request.gpus > 1 else ''} (usable {b.usable_gib:,.1f} GiB after the CUDA context "
            f"{b.cuda_context_gib:g} GiB and a {b.margin_gib:,.1f} GiB margin), priority {rec.request.priority}")
    console.print(head, highlight=False)
    if rec.chosen is None:
        console.print("[bold red]no method fits[/]")
    else:
        c = rec.chosen
        console.print(f"[bold green]recommended: {c.cand.label}[/] (method {c.cand.method}), predicted peak "
                      f"{c.peak_gib:,.2f} GiB", highlight=False)
        console.print("config: " + ", ".join(f"{k}={v}" for k, v in c.config().items()), highlight=False)
        if c.launch_hint():
            console.print(c.launch_hint(), highlight=False, markup=False)
    console.print("[bold]why[/]")
    for line in rec.reasons():
        console.print(f"  - {line}", highlight=False)
    table = Table(title="alternatives", title_justify="left", header_style="bold")
    for col, right in (("candidate", False), ("peak GiB", True), ("fits", False), ("score", True), ("reason", False)):
        table.add_column(col, justify="right" if right else "left", no_wrap=col != "reason")
    for o in rec.options:
        if o is rec.chosen:
            continue
        table.add_row(o.cand.label, f"{o.peak_gib:,.1f}", "[green]yes[/]" if o.fits else "[red]no[/]",
                      f"{o.score:+.2f}", rec.reason(o).split(": ", 1)[1])
    console.print(table)
    console.print("rules that fired: " + ", ".join(r.name for r in rec.rules_fired) +
                  ". Each rule's source: `peftbench recommend ... --json` (rules_fired) or docs/recommender.md.",
                  style="dim", highlight=False)
    for note in rec.notes:
        console.print(f"note: {note}", style="dim", highlight=False)


def recommendation_table(rows, req) -> Table:
    """One row per common model size: the recommendation for the same budget and data size."""
    table = Table(title=f"recommendations for {req.gpu_gb:g} GiB x {req.gpus} GPU, {req.examples:,} examples, "
                        f"{req.task}, seq {req.seq_len}, priority {req.priority}",
                  title_justify="left", header_style="bold")
    for col in ("size", "model", "method", "settings", "peak GiB", "runner-up"):
        table.add_column(col, justify="right" if col == "peak GiB" else "left")
    for size, rec in rows:
        if rec.chosen is None:
            table.add_row(size, rec.model, "[red]none fits[/]", f"needs ~{rec.smallest_budget_gib:,.0f} GiB", "-", "-")
            continue
        c = rec.chosen
        cfg = c.config()
        settings = f"batch {cfg['batch_size']}x{cfg['gradient_accumulation']}" + \
            (", grad-ckpt" if cfg["gradient_checkpointing"] else "") + \
            (f", {cfg['optimizer']}" if cfg["optimizer"] != "adamw" else "") + f", lr {cfg['learning_rate']:g}"
        runner_up = next((o.cand.label for o in rec.options if o.fits and o is not c), "-")
        table.add_row(size, rec.model, c.cand.label, settings, f"{c.peak_gib:,.1f}", runner_up)
    return table
