"""`peftbench compare BEFORE AFTER`: what moved between two results folders of the same suite, and whether it moved
beyond the noise. No torch import.

What a maintainer does by hand after a library upgrade or on a new machine. For each run both folders have and
each figure (metrics.FIGURES), AFTER minus BEFORE over the seeds both folders have (the before and after columns
are the means over those seeds), as summary.paired_figure pairs them:

- a figure that repeats exactly (Measure.exact: counts, the CPU tensor peak, sizes) is "same" or "changed";
- with two or more seeds in common, the paired t test over those seeds (same seed, same data order);
- with one seed, a score is paired over the evaluation rows (both folders' per-row data, the same bootstrap
  resamples); a timing of one seed cannot be told from noise and says so;
- a figure equal in every pair (same seed, same value: CPU training repeats to the bit) is "same", untested;
- Benjamini-Hochberg across every tested (run, figure) of the comparison, intervals at the Benjamini-Yekutieli
  level (peftbench/stats.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from . import stats
from .metrics import FIGURES, Figure
from .results import RunRecord
from .stats import Difference
from .summary import paired_figure, summarize, task_of


@dataclass(frozen=True)
class Moved:
    run: str
    figure: Figure
    before: float
    after: float
    diff: Difference


@dataclass
class Comparison:
    rows: list[Moved]
    only_before: list[str] = field(default_factory=list)  # runs with an ok record in one folder only
    only_after: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what differs between the two folders' manifests


def _manifest_notes(a: dict | None, b: dict | None) -> list[str]:
    if not a or not b:
        return ["a folder has no readable manifest.json: its suite and versions cannot be compared"]
    notes = []
    if a.get("suite_sha256") != b.get("suite_sha256"):
        notes.append("the two suites differ (suite_sha256): differences may come from the suite, not the stack")
    pa, pb = a.get("provenance", {}), b.get("provenance", {})
    packages = {**pa.get("packages", {}), **pb.get("packages", {})}
    moved = [f"{name} {pa.get('packages', {}).get(name, '-')} -> {pb.get('packages', {}).get(name, '-')}"
             for name in packages if pa.get("packages", {}).get(name) != pb.get("packages", {}).get(name)]
    if moved:
        notes.append("versions: " + ", ".join(moved))
    for key in ("platform", "cpu_count"):
        if pa.get(key) != pb.get(key):
            notes.append(f"{key}: {pa.get(key)} -> {pb.get(key)}")
    if (pa.get("cpu") or {}).get("name") != (pb.get("cpu") or {}).get("name"):
        notes.append(f"cpu: {(pa.get('cpu') or {}).get('name')} -> {(pb.get('cpu') or {}).get('name')}")
    return notes


def compare_stores(records_a: list[RunRecord], records_b: list[RunRecord], manifest_a: dict | None,
                   manifest_b: dict | None) -> Comparison:
    runs_a = {s.run: s for s in summarize(records_a, rows=False)}
    runs_b = {s.run: s for s in summarize(records_b, rows=False)}
    task = task_of(records_a + records_b)
    both = [run for run in runs_a if run in runs_b and runs_a[run].ok and runs_b[run].ok]
    family: dict[tuple[str, str], stats.Paired] = {}
    means: dict[tuple[str, str], tuple[float, float]] = {}
    for run in both:
        sa, sb = runs_a[run], runs_b[run]
        for key, fig in FIGURES.items():
            found = paired_figure(fig, sb.ok, sa.ok, task)  # AFTER minus BEFORE
            if found is not None:
                family[(run, key)] = found[0]
                means[(run, key)] = (found[2], found[1])  # before, after: over the seeds both have
    corrected = stats.correct({f"{run}\0{key}": d for (run, key), d in family.items()})
    rows = [Moved(run, FIGURES[key], *means[(run, key)], corrected[f"{run}\0{key}"]) for run, key in family]
    return Comparison(
        rows,
        only_before=[r for r in runs_a if r not in both],
        only_after=[r for r in runs_b if r not in both],
        notes=_manifest_notes(manifest_a, manifest_b),
    )


SHOWN = ("beyond noise", "changed")  # what the table lists without --all


def _fmt(v: float | None, fig: Figure, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    spec = fig.fmt.lstrip(",") if sign else fig.fmt
    text = format(v, ("+" if sign else "") + spec)
    if v and not any(c in "123456789" for c in text):  # a real change below the figure's own precision
        text = format(v, ("+" if sign else "") + ".3g")
    return text


def _pair(before: float, after: float, fig: Figure) -> tuple[str, str]:
    """before and after, with as many digits as it takes to see that they differ."""
    a, b = _fmt(before, fig), _fmt(after, fig)
    if a == b and before != after:
        a, b = format(before, ".7g"), format(after, ".7g")
    return a, b


def print_comparison(c: Comparison, console: Console, before: str, after: str, show_all: bool) -> None:
    table = Table(title=f"{before} -> {after}", title_justify="left", header_style="bold")
    for col, right in (("run", False), ("figure", False), ("before", True), ("after", True), ("change", True),
                       ("95% interval*", True), ("verdict", False), ("how", False)):
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    counts: dict[str, int] = {}
    for m in c.rows:
        verdict = m.diff.verdict
        counts[verdict] = counts.get(verdict, 0) + 1
        if not show_all and verdict not in SHOWN:
            continue
        pct = 100 * m.diff.mean / abs(m.before) if m.before and math.isfinite(m.diff.mean) else None
        rel = "" if pct is None else f" ({pct:+.1f}%)" if abs(pct) >= 0.05 or not pct else f" ({pct:+.1g}%)"
        interval = (f"[{_fmt(m.diff.lo, m.figure, True)}, {_fmt(m.diff.hi, m.figure, True)}]"
                    if m.diff.lo is not None else "-")
        how = {"t": f"paired t, {m.diff.n} seeds", "bootstrap": f"bootstrap, {m.diff.n} rows",
               "exact": "repeats exactly", "identical": "equal in every pair"}[m.diff.method]
        style = "bold" if verdict in SHOWN else "dim"
        unit = f" {m.figure.unit}" if m.figure.unit else ""
        table.add_row(m.run, f"{m.figure.label}{unit}", *_pair(m.before, m.after, m.figure),
                      _fmt(m.diff.mean, m.figure, True) + rel, interval, f"[{style}]{verdict}[/]", how)
    if table.row_count:
        console.print(table)
    else:
        console.print(f"{before} -> {after}: nothing moved beyond the noise", highlight=False)
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    console.print(f"{len(c.rows)} figures of {len({m.run for m in c.rows})} runs: {tally}"
                  + ("" if show_all else " (--all lists every one)"), highlight=False)
    levels = {m.diff.level for m in c.rows if m.diff.level is not None}
    if levels:
        console.print(f"* intervals at the Benjamini-Yekutieli level {min(levels):.4f} after Benjamini-Hochberg at "
                      f"FDR {stats.FDR:g} over the {sum(m.diff.p_adjusted is not None for m in c.rows)} tested "
                      "figures; beyond noise = its interval leaves out 0", style="dim", highlight=False)
    for run in c.only_before:
        console.print(f"note: {run}: no ok record in {after}", style="yellow", highlight=False)
    for run in c.only_after:
        console.print(f"note: {run}: no ok record in {before}", style="yellow", highlight=False)
    for note in c.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
