"""Per-run summaries over seeds, the Pareto front, the exports, the plots, the HTML page and `compare`, on results
folders written here with known values. No torch."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from peftbench import stats
from peftbench.metrics import FIGURES
from peftbench.results import ResultStore, RunRecord
from peftbench.summary import pareto, summarize, summary_columns, task_of, versus_best

from ..conftest import assert_user_error, invoke

N_ROWS = 40


def _record(run: str, method: str, seed: int, acc_hits: int, peak: float, tok_s: float, **kw) -> RunRecord:
    """A classification record whose per-row data gives accuracy acc_hits / N_ROWS."""
    preds = [1] * acc_hits + [0] * (N_ROWS - acc_hits)
    per_row = {"pred": preds, "label": [1] * N_ROWS, "loss": [0.1 if p else 1.0 for p in preds]}
    acc = acc_hits / N_ROWS
    return RunRecord(run=run, method=method, status="ok", seed=seed, eval={"accuracy": acc, "loss": 0.5, "f1": acc},
                     base={"accuracy": 0.5}, eval_per_row=per_row, eval_rows=N_ROWS, peak_mem_mib=peak,
                     est_peak_mib=peak * 1.05, trainable_params=kw.pop("params", 1000), trainable_pct=0.1,
                     train_tokens_per_s=tok_s, latency_ms_p50=kw.pop("lat", 2.0), **kw)


def _folder(root, shift: int = 0, peak_full: float = 400.0, seeds=(0, 1, 2), suite="x", jitter: float = 0.0,
            spread: int = 0) -> ResultStore:
    """Three runs over `seeds`: full (best), lora (2-3 rows behind), prompt (far behind); `shift` + `spread` x seed
    adds hits, `jitter` moves each seed's throughput by +-jitter tok/s."""
    store = ResultStore(root)
    names = ("full", "lora-r8", "prompt")
    store.create({"suite_sha256": suite, "suite_name": "demo", "runs": [{"name": n} for n in names],
                  "provenance": {"packages": {"torch": "2.13.0"}}, "resolved_suite": {"name": "demo"}})
    for s in seeds:
        j = jitter * (-1) ** s
        shift_s = shift + spread * s
        store.write(_record("full", "full", s, 36 + s % 2 + shift_s, peak_full, 600.0 + 10 * s + j, params=22_000_000,
                            latency_ms_p50_merged=None), f"full@s{s}")
        store.write(_record("lora-r8", "lora", s, 34 + s % 2 + shift_s, 200.0, 800.0 - 5 * s + j, params=150_000,
                            latency_ms_p50_merged=1.9), f"lora-r8@s{s}")
        store.write(_record("prompt", "prompt", s, 22 + s % 3 + shift_s, 180.0, 900.0 + s, params=8_000),
                    f"prompt@s{s}")
    return store


def test_pareto_front_of_known_points():
    pts = [(1, 0.5), (2, 0.9), (3, 0.8), (2, 0.6), (0.5, 0.4), (2, 0.9)]
    # lower cost and higher score are better: (3, 0.8) and (2, 0.6) are beaten by (2, 0.9); equal points both stay
    assert pareto(pts) == [0, 1, 4, 5]
    assert pareto([(1, 2.0), (2, 1.0)], higher_y=False) == [0, 1]
    assert pareto([(1, 1.0), (2, 2.0)], higher_y=False) == [0]


def test_summary_means_intervals_and_the_best(tmp_path):
    runs = summarize(_folder(tmp_path / "a").records())
    assert [s.run for s in runs] == ["full", "lora-r8", "prompt"]
    full = runs[0]
    assert full.seeds == [0, 1, 2] and full.status == "ok"
    accs = [36 / 40, 37 / 40, 36 / 40]
    assert full.figures["eval_accuracy"] == stats.t_interval(accs)
    assert full.figures["peak_mem_mib"].half_width == 0  # the same peak every seed
    assert full.rows["eval_accuracy"].method == "bootstrap" and full.rows["eval_accuracy"].n == N_ROWS
    diffs = versus_best(runs, FIGURES["eval_accuracy"])
    assert set(diffs) == {"lora-r8", "prompt"}
    assert diffs["prompt"].beyond_noise and diffs["prompt"].mean == pytest.approx((23 - 36 - 1 / 3) / 40)
    assert task_of(full.ok) == "classification"


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)])
def test_a_run_equal_to_the_best_on_every_seed_is_the_same_not_a_test(tmp_path, seeds):
    store = _folder(tmp_path / "a", seeds=seeds)
    for s in seeds:  # a second run with the best run's scores, seed by seed and row by row
        twin = store.read(f"full@s{s}")
        twin.run, twin.method = "twin", "ia3"
        store.write(twin, f"twin@s{s}")
    runs = summarize(store.records())
    diffs = versus_best(runs, FIGURES["eval_accuracy"])
    assert diffs["twin"].verdict == "same" and diffs["twin"].p_adjusted is None
    assert diffs["prompt"].p_adjusted is not None  # the others are still compared


def test_equal_gains_on_every_seed_are_judged_on_the_rows_not_called_certain(tmp_path):
    """Two seeds that each gain the same number of rows differ without spread: the t statistic is undefined, and
    the comparison goes to the evaluation rows instead of calling it exact."""
    before, after = _folder(tmp_path / "a"), _folder(tmp_path / "b", shift=1)
    result = invoke("compare", before.root, after.root, "--all")
    acc = next(line for line in result.stdout.splitlines() if "prompt" in line and " accuracy" in line
               and "base" not in line)
    assert "bootstrap, 40 rows" in acc and "within noise" in acc  # one row of 40


def test_partly_shared_seeds_and_values_that_are_not_finite(tmp_path):
    store = _folder(tmp_path / "a")
    for name in ("full@s0", "lora-r8@s0"):  # the best run without seed 0, another run with a perplexity of inf
        r = store.read(name)
        if r.run == "full":
            (store.runs_dir / f"{name}.json").unlink()
        else:
            r.eval["perplexity"] = float("inf")
            store.write(r, name)
    runs = summarize(store.records())
    diff = versus_best(runs, FIGURES["eval_accuracy"])["lora-r8"]
    assert diff.n == 2 and diff.mean == pytest.approx((35 / 40 + 34 / 40) / 2 - (37 / 40 + 36 / 40) / 2)
    other = _folder(tmp_path / "b")
    result = invoke("compare", store.root, other.root, "--all")
    assert result.exit_code == 0, result.output  # an infinite perplexity is left out, not a crash


def test_a_failed_seed_is_counted_not_averaged(tmp_path):
    store = _folder(tmp_path / "a")
    store.write(RunRecord(run="lora-r8", method="lora", status="failed", seed=2, error="boom"), "lora-r8@s2")
    lora = summarize(store.records())[1]
    assert lora.status == "ok 2/3" and lora.seeds == [0, 1] and lora.figures["eval_accuracy"].n == 2
    result = invoke("report", store.root)
    assert result.exit_code == 0 and "lora-r8@s2: failed: boom" in result.stdout


def test_report_table_shows_intervals_seeds_and_verdicts(tmp_path):
    result = invoke("report", _folder(tmp_path / "a").root)
    assert result.exit_code == 0, result.output
    assert "seeds" in result.stdout and " ± " in result.stdout and "best" in result.stdout
    assert "beyond noise" in result.stdout and "Student-t" in result.stdout and "Benjamini-Hochberg" in result.stdout
    assert "a [lo, hi]: the interval cut at a bound" in result.stdout  # printed as text, not read as markup


def test_exports_csv_json_parquet_and_per_seed(tmp_path):
    store = _folder(tmp_path / "a")
    out = {ext: tmp_path / f"s.{ext}" for ext in ("csv", "json", "parquet")}
    result = invoke("report", store.root, "--csv", out["csv"], "--json", out["json"], "--parquet", out["parquet"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out["csv"])
    assert list(frame.columns) == summary_columns() and list(frame["run"]) == ["full", "lora-r8", "prompt"]
    full = frame.iloc[0]
    iv = stats.t_interval([36 / 40, 37 / 40, 36 / 40])
    assert full["n_seeds"] == 3 and full["seeds"] == "0 1 2" and full["vs_best_verdict"] == "best"
    assert (full["eval_accuracy"], full["eval_accuracy_lo"], full["eval_accuracy_hi"]) == pytest.approx(
        (iv.mean, iv.lo, iv.hi))
    assert frame.iloc[2]["vs_best_verdict"] == "beyond noise"
    assert json.loads(out["json"].read_text())[1]["run"] == "lora-r8"
    parquet = pd.read_parquet(out["parquet"])
    assert list(parquet.columns) == list(frame.columns)
    assert parquet["eval_accuracy_hi"].tolist() == pytest.approx(frame["eval_accuracy_hi"].tolist())
    per_seed = tmp_path / "p.csv"
    assert invoke("report", store.root, "--csv", per_seed, "--per-seed").exit_code == 0
    rows = pd.read_csv(per_seed)
    assert len(rows) == 9 and list(rows["seed"][:3]) == [0, 1, 2] and "eval_accuracy" in rows.columns


PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_into_a_folder_and_into_one_file(tmp_path):
    store = _folder(tmp_path / "a")
    target = tmp_path / "plots"
    result = invoke("report", store.root, "--plot", target)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    assert names == ["latency.png", "score-vs-memory.png", "score-vs-params.png", "throughput.png"]
    assert all((target / n).read_bytes().startswith(PNG) for n in names)
    assert_user_error(invoke("report", store.root, "--plot", target), "exist there", "--force")
    assert invoke("report", store.root, "--plot", target, "--force").exit_code == 0
    one = tmp_path / "all.png"
    assert invoke("report", store.root, "--plot", one).exit_code == 0 and one.read_bytes().startswith(PNG)


def test_html_page_is_self_contained(tmp_path):
    store = _folder(tmp_path / "a")
    page = tmp_path / "r.html"
    result = invoke("report", store.root, "--html", page)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for external in ("href=", "<link", "<script", "url(", "@import", "http://", "https://", "//cdn"):
        assert external not in text, external
    assert "lora-r8" in text and "Benjamini-Hochberg" in text and "estimate MiB" in text and "torch" in text


def test_compare_says_what_moved_beyond_the_noise(tmp_path):
    before = _folder(tmp_path / "a")
    after = _folder(tmp_path / "b", shift=3, spread=1, peak_full=420.0, jitter=4.0)  # +3, +4, +5 rows
    result = invoke("compare", before.root, after.root)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    peak = next(line for line in lines if "full" in line and "peak tensor" in line)
    assert "changed" in peak and "repeats exactly" in peak
    acc = next(line for line in lines if "prompt" in line and "accuracy" in line and "base" not in line)
    # +0.075, +0.100, +0.125: t = 6.93 on 2 degrees of freedom, p = 0.020, selected by Benjamini-Hochberg
    assert "beyond noise" in acc and "paired t, 3 seeds" in acc and "+0.100" in acc
    assert "within noise" in result.stdout  # the tally: throughput moved by +-4 tok/s, and back
    assert "same" in result.stdout  # latency: equal on every seed
    assert "Benjamini-Yekutieli" in result.stdout


def test_compare_with_one_seed_resamples_the_evaluation_rows(tmp_path):
    before = _folder(tmp_path / "a", seeds=(0,))
    after = _folder(tmp_path / "b", seeds=(0,), shift=4, jitter=3.0)
    result = invoke("compare", before.root, after.root, "--all")
    assert result.exit_code == 0, result.output
    acc = next(line for line in result.stdout.splitlines() if "prompt" in line and " accuracy" in line
               and "base" not in line)
    assert "bootstrap, 40 rows" in acc
    assert "cannot tell (1 seed)" in result.stdout  # a timing of one seed


def test_compare_notes_what_differs_between_the_folders(tmp_path):
    before = _folder(tmp_path / "a")
    after = _folder(tmp_path / "b", suite="y")
    result = invoke("compare", before.root, after.root)
    assert result.exit_code == 0 and "the two suites differ" in result.stdout
    assert_user_error(invoke("compare", before.root, tmp_path / "none"), "does not exist")
