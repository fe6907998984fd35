"""One self-contained HTML page of a results folder: the table with intervals, the plots, the estimate beside the
measurement, the environment and the suite. No torch import.

Self-contained on purpose, for a pull request or a paper's supplement: the plots are PNGs embedded as base64
data, the style is inline, and nothing is fetched from a network (no CDN, no web font, no script).
"""

from __future__ import annotations

import base64
import datetime
import html
from typing import Any

import yaml
from rich.text import Text

from .plots import PLOTS, render
from .report import how_sure, table_columns
from .summary import RunSummary

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #212121; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2rem; }
.sub { color: #616161; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #eeeeee; white-space: nowrap; }
th { text-align: left; background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.note { color: #616161; font-size: 0.85rem; }
.bad { color: #c62828; } .best { font-weight: 600; }
.plots { display: grid; grid-template-columns: 1fr; gap: 1.5rem; }
figure { margin: 0; } figure img { width: 100%; max-width: 900px; height: auto; border: 1px solid #eeeeee; }
figcaption { color: #616161; font-size: 0.85rem; }
pre { background: #fafafa; border: 1px solid #eeeeee; padding: 0.8rem; font-size: 0.8rem; overflow-x: auto; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if n else f"<td>{_e(c)}</td>"
                                    for c, n in zip(row, numeric, strict=True)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _results(runs: list[RunSummary]) -> str:
    cols = sorted(table_columns(runs), key=lambda c: c.priority)  # the most important first: no scrolling to them
    rows = [[Text.from_markup(c.cell(s)).plain for c in cols] for s in runs]
    return _table([c.header for c in cols], rows, [c.right for c in cols])


def _estimates(runs: list[RunSummary]) -> str:
    rows = []
    for s in runs:
        est, peak = s.mean("est_peak_mib"), s.mean("peak_mem_mib")
        if est is None and peak is None:
            continue
        err = f"{100 * (est - peak) / peak:+.1f}%" if est is not None and peak else "-"
        rows.append([s.run, "-" if est is None else f"{est:,.1f}", "-" if peak is None else f"{peak:,.1f}", err,
                     s.first.peak_mem_kind or "-"])
    if not rows:
        return '<p class="note">No run has a memory estimate or measurement.</p>'
    return _table(["run", "estimate MiB", "measured peak MiB", "error", "what the measurement counts"], rows,
                  [False, True, True, True, False])


def _environment(manifest: dict | None) -> str:
    if not manifest:
        return '<p class="note">The folder has no readable manifest.json.</p>'
    prov = manifest.get("provenance", {})
    rows = [[k, prov[k]] for k in ("peftbench", "git_commit", "git_dirty", "python", "platform", "cpu_count")
            if k in prov]
    cpu = prov.get("cpu") or {}
    if cpu:
        rows.append(["cpu", f"{cpu.get('name', '')} ({', '.join(cpu.get('flags', []))})"])
    for name, version in (prov.get("packages") or {}).items():
        rows.append([name, version])
    for key in ("suite_name", "suite_path", "suite_sha256", "created_at"):
        if key in manifest:
            rows.append([key, manifest[key]])
    return _table(["what", "value"], rows, [False, False])


def _plots(runs: list[RunSummary]) -> str:
    pngs = render(runs)
    if not pngs:
        return '<p class="note">No run has the figures the plots need.</p>'
    items = []
    for name, data in pngs.items():
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        items.append(f'<figure><img src="{src}" alt="{_e(PLOTS[name])}"><figcaption>{_e(PLOTS[name])}'
                     f"</figcaption></figure>")
    return f'<div class="plots">{"".join(items)}</div>'


def _failures(runs: list[RunSummary]) -> str:
    lines = [f"<li><b>{_e(r.run)}</b> (seed {_e(r.seed)}): {_e(r.status)}: {_e(r.error)}</li>"
             for s in runs for r in s.not_ok]
    return f'<h2>Runs that did not finish</h2><ul class="bad">{"".join(lines)}</ul>' if lines else ""


def _yaml(data: Any) -> str:
    """The resolved suite as YAML, a string with a newline in double quotes ("{input}\\n") instead of YAML's folded
    single-quoted form, which shows the newline as a blank line."""
    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=110)


def page(runs: list[RunSummary], manifest: dict | None, title: str, notes: list[str]) -> str:
    """The whole page as one string."""
    suite = (manifest or {}).get("resolved_suite")
    suite_text = _yaml(suite) if suite else "(no resolved suite in the manifest)"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n_records = sum(len(s.ok) + len(s.not_ok) for s in runs)
    extra = "".join(f'<p class="note">{_e(n)}</p>' for n in notes if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}: peftbench results</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="sub">peftbench results: {len(runs)} runs, {n_records} records. Page written {when}.</p>
<h2>Results</h2>
{_results(runs)}
<p class="note">{_e(how_sure(runs))}</p>
{extra}
{_failures(runs)}
<h2>Plots</h2>
{_plots(runs)}
<h2>Memory: the estimate beside the measurement</h2>
{_estimates(runs)}
<h2>Environment</h2>
{_environment(manifest)}
<h2>Suite</h2>
<pre>{_e(suite_text)}</pre>
<p class="note">Every column is defined in docs/columns.md of peftbench; the statistics in its README, "How sure is a
number".</p>
</body></html>
"""
