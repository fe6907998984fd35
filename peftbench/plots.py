"""The pictures of a results folder, as PNG (matplotlib's Agg backend: no display needed). No torch import.

Four plots, each from the run summaries (peftbench/summary.py), so a run of several seeds is one point with its
95% interval as error bars:

- score vs peak memory, the Pareto front marked (the runs no other run beats on both: coloured and joined;
  dominated runs grey), the figure the PEFT method comparison also draws;
- score vs trainable parameters, log scale;
- training throughput per run;
- latency per run, unmerged beside merged (mergeable methods only).
"""

from __future__ import annotations

import io
from pathlib import Path

from .metrics import FIGURES, Figure
from .summary import RunSummary, pareto, primary_figure

PLOTS = {  # file name -> what it shows
    "score-vs-memory.png": "score against peak tensor memory, Pareto front marked",
    "score-vs-params.png": "score against trainable parameters (log scale)",
    "throughput.png": "training throughput per run",
    "latency.png": "forward latency per run, unmerged and merged",
}
FRONT, DOMINATED = "#1f77b4", "#9e9e9e"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: the same PNGs on a server, in CI and on a laptop
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                         "figure.dpi": 110})
    return plt


def _err(s: RunSummary, key: str) -> tuple[float, float] | None:
    """(below, above) the mean: the t interval over seeds, or for one seed the bootstrap over evaluation rows."""
    iv = s.figures.get(key)
    if iv is None:
        return None
    if iv.n > 1 and iv.lo is not None:
        return iv.mean - iv.lo, iv.hi - iv.mean
    rows = s.rows.get(key)
    if rows is not None and rows.lo is not None:
        return max(iv.mean - rows.lo, 0.0), max(rows.hi - iv.mean, 0.0)
    return None


def _interval_kind(runs: list[RunSummary], scores: bool) -> str:
    seeds = sorted({len(s.ok) for s in runs if s.ok})
    what, whisker = ("points", "bars") if scores else ("bars", "whiskers")
    if seeds and seeds[-1] > 1:
        n = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
        single = seeds[0] == 1 and (" (one-seed runs: bootstrap over rows)" if scores else " (one-seed runs: none)")
        return f"{what}: mean over {n} seeds; {whisker}: 95% Student-t interval{single or ''}"
    return f"one seed; {whisker}: 95% bootstrap over the evaluation rows" if scores else "one seed: no interval"


LABELS = {"peak_mem_mib": "peak tensor memory (MiB), load + training", "trainable_params": "trainable parameters",
          "train_tokens_per_s": "training throughput (non-padding tokens/s)",
          "latency_ms_p50": "forward latency, median (ms)"}


def _axis(fig: Figure) -> str:
    return LABELS.get(fig.key) or (f"{fig.label} ({fig.unit})" if fig.unit else fig.label)


def _scatter(ax, runs: list[RunSummary], score: Figure, cost: Figure, log: bool, title: str) -> None:
    have = [s for s in runs if s.mean(score.key) is not None and s.mean(cost.key) is not None]
    points = [(s.mean(cost.key), s.mean(score.key)) for s in have]
    on = set(pareto(points, higher_x=False, higher_y=score.higher_is_better))
    for i, s in enumerate(have):
        x, y = points[i]
        yerr, xerr = _err(s, score.key), _err(s, cost.key)
        color = FRONT if i in on else DOMINATED
        ax.errorbar([x], [y], yerr=[[yerr[0]], [yerr[1]]] if yerr else None,
                    xerr=[[xerr[0]], [xerr[1]]] if xerr and not log else None,
                    fmt="o", color=color, ecolor=color, elinewidth=1.2, capsize=3, markersize=7, zorder=3)
    if len(on) > 1:
        xs, ys = zip(*sorted(points[i] for i in on), strict=True)
        ax.plot(xs, ys, "-", color=FRONT, alpha=0.45, zorder=2)
    ax.plot([], [], "o-", color=FRONT, label="Pareto front: no run scores better for less")
    if len(on) < len(have):
        ax.plot([], [], "o", color=DOMINATED, label="dominated")
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    lo, hi = score.bounds
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom if lo is None else max(bottom, lo - 0.02 * (top - bottom)),
                top if hi is None else min(top, hi + 0.02 * (top - bottom)))
    _label(ax, points, [s.run for s in have], on)
    ax.set_xlabel(_axis(cost) + ", less is better")
    ax.set_ylabel(f"{_axis(score)}, {'higher' if score.higher_is_better else 'lower'} is better")
    ax.set_title(f"{title}\n{_interval_kind(runs, True)}", loc="left")


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: tuple[float, ...], frame: tuple[float, ...]) -> bool:
    return frame[0] <= a[0] and a[2] <= frame[2] and frame[1] <= a[1] and a[3] <= frame[3]


def _label(ax, points: list[tuple[float, float]], names: list[str], bold: set[int]) -> None:
    """Put each run's name next to its point where it overlaps no name placed before it: a few candidate offsets
    around the point, in screen space, the first free one (the points' axes limits must be final)."""
    ax.figure.canvas.draw()  # fixes the transform from data to pixels
    char_w, line_h = 5.6, 11.0  # of a 9-point label at this figure's dpi, in points
    placed: list[tuple[float, float, float, float]] = []
    e = ax.get_window_extent()
    frame = tuple(v * 72 / ax.figure.dpi for v in (e.x0, e.y0, e.x1, e.y1))  # the axes, in points
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        px, py = ax.transData.transform(points[i]) * 72 / ax.figure.dpi  # in points
        w = char_w * len(names[i])
        spots = [(7, 4), (7, -14), (12, 18), (12, -30), (-12 - w, 18), (-12 - w, -30), (-7 - w, 4), (-7 - w, -14)]
        boxes = [(px + dx, py + dy, px + dx + w, py + dy + line_h) for dx, dy in spots]
        inside = [k for k, box in enumerate(boxes) if _inside(box, frame)] or [0]
        k = next((k for k in inside if not any(_overlap(boxes[k], b) for b in placed)), inside[0])
        dx, dy = spots[k]
        placed.append(boxes[k])
        leader = {"arrowstyle": "-", "color": "#9e9e9e", "lw": 0.7, "shrinkA": 0, "shrinkB": 4} if k else None
        ax.annotate(names[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=9, arrowprops=leader,
                    color="black" if i in bold else "#616161", fontweight="bold" if i in bold else "normal")


def _bars(ax, runs: list[RunSummary], series: list[Figure], title: str, better: str,
          names: list[str] | None = None, missing: str = "") -> None:
    have = [s for s in runs if any(s.mean(f.key) is not None for f in series)]
    height = 0.8 / len(series)
    colors = ["#1f77b4", "#ff7f0e"]
    right = max((s.mean(f.key) + (_err(s, f.key) or (0, 0))[1]) for s in have for f in series
                if s.mean(f.key) is not None)
    for j, f in enumerate(series):
        pos = [(i + (j - (len(series) - 1) / 2) * height, s) for i, s in enumerate(have) if s.mean(f.key) is not None]
        vals = [s.mean(f.key) for _, s in pos]
        errs = [_err(s, f.key) or (0.0, 0.0) for _, s in pos]
        ax.barh([y for y, _ in pos], vals, height=height * 0.9, color=colors[j % len(colors)],
                xerr=[[e[0] for e in errs], [e[1] for e in errs]] if any(any(e) for e in errs) else None,
                error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#424242"},
                label=(names or [x.label for x in series])[j] if len(series) > 1 else None)
        for (y, _), v, e in zip(pos, vals, errs, strict=True):  # the value, past the end of its error bar
            ax.text(v + e[1] + 0.01 * right, y, format(v, f.fmt), va="center", fontsize=8)
        if missing:  # say why a bar is absent instead of leaving a gap that reads as 0
            for i, s in enumerate(have):
                if s.mean(f.key) is None:
                    ax.text(0.01 * right, i + (j - (len(series) - 1) / 2) * height, missing, va="center",
                            fontsize=8, color="#757575", style="italic")
    ax.set_yticks(range(len(have)), [s.run for s in have])
    ax.invert_yaxis()  # the suite's run order, top to bottom
    ax.set_xlim(0, right * 1.15)
    ax.set_xlabel(f"{_axis(series[0])}, {better} is better")
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(f"{title}\n{_interval_kind(runs, False)}", loc="left")


def _panels(runs: list[RunSummary]) -> dict[str, tuple]:
    """file name -> (draw(ax), height in inches) for each plot the runs have data for."""
    panels = {}
    score = primary_figure(runs)
    bar_height = 0.45 * max(len(runs), 3) + 1.5
    if score is not None:
        panels["score-vs-memory.png"] = (lambda ax: _scatter(
            ax, runs, score, FIGURES["peak_mem_mib"], False, f"{score.label} vs peak tensor memory"), 5.0)
        panels["score-vs-params.png"] = (lambda ax: _scatter(
            ax, runs, score, FIGURES["trainable_params"], True, f"{score.label} vs trainable parameters"), 5.0)
    if any(s.mean("train_tokens_per_s") is not None for s in runs):
        panels["throughput.png"] = (lambda ax: _bars(
            ax, runs, [FIGURES["train_tokens_per_s"]], "training throughput", "more"), bar_height)
    if any(s.mean("latency_ms_p50") is not None for s in runs):
        panels["latency.png"] = (lambda ax: _bars(
            ax, runs, [FIGURES["latency_ms_p50"], FIGURES["latency_ms_p50_merged"]],
            "forward latency of one batch, unmerged and merged into the weights", "less",
            ["unmerged (adapter on the side)", "merged into the weights"], "no merged figure (see merge_note)"),
            1.6 * bar_height)
    return panels


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def render(runs: list[RunSummary]) -> dict[str, bytes]:
    """The plots that the runs have data for, one figure each: file name -> PNG bytes."""
    plt = _pyplot()
    out = {}
    for name, (draw, height) in _panels(runs).items():
        fig, ax = plt.subplots(figsize=(7.5, height))
        draw(ax)
        out[name] = _png(fig, plt)
    return out


def render_one(runs: list[RunSummary]) -> bytes | None:
    """Every plot as panels of one PNG (two per row), or None without data."""
    plt = _pyplot()
    panels = list(_panels(runs).values())
    if not panels:
        return None
    rows = (len(panels) + 1) // 2
    heights = [max(h for _, h in panels[2 * i: 2 * i + 2]) for i in range(rows)]
    fig, axes = plt.subplots(rows, 2, figsize=(15, sum(heights)), gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    for ax, (draw, _) in zip(axes.flat, panels, strict=False):
        draw(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return _png(fig, plt)


def write(runs: list[RunSummary], target: Path) -> list[Path]:
    """Write the plots: one PNG per plot into the folder `target` (created), or, for a target ending in .png,
    all of them as panels of that one file. Returns the files written."""
    if target.suffix.lower() == ".png":
        data = render_one(runs)
        if data is None:
            return []
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render(runs).items():
        (target / name).write_bytes(data)
        written.append(target / name)
    return written
