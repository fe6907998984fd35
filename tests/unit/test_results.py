"""Result records, the store and the exports (no torch)."""

from __future__ import annotations

import csv
import json
from dataclasses import fields

from peftbench.results import CSV_COLUMNS, ResultStore, RunRecord, export_csv, export_json

REQUIRED = [
    "method", "status", "error", "trainable_params", "total_params", "trainable_pct", "peak_mem_mib",
    "peak_mem_kind", "peak_rss_mib", "train_s", "train_tokens_per_s", "latency_ms_p50", "latency_ms_p90",
    "gen_ms_per_token", "adapter_size_mb", "eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity",
    "eval_exact_match", "base_accuracy", "base_f1", "base_perplexity", "base_exact_match",
]


def test_csv_has_the_documented_columns():
    assert set(REQUIRED) <= set(CSV_COLUMNS)
    assert CSV_COLUMNS[:2] == ["run", "method"] and "settings" not in CSV_COLUMNS


def test_store_roundtrip_order_and_exports(tmp_path):
    store = ResultStore(tmp_path / "r")
    store.create({"runs": [{"name": "lora-r8"}, {"name": "full"}]})
    store.write(RunRecord(run="full", method="full", status="ok", trainable_params=10, eval={"accuracy": 0.9}))
    store.write(RunRecord(run="lora-r8", method="lora", status="oom", error="CUDA out of memory"))
    assert store.has("full") and not store.has("prompt")
    records = store.records()
    assert [r.run for r in records] == ["lora-r8", "full"]  # the suite's order, not the writing order
    export_csv(records, tmp_path / "out.csv")
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 2 and list(rows[0]) == CSV_COLUMNS
    assert rows[1]["trainable_params"] == "10" and rows[0]["status"] == "oom"
    export_json(records, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())[1]["eval"] == {"accuracy": 0.9}
    assert rows[1]["eval_accuracy"] == "0.9" and rows[1]["base_accuracy"] == ""  # the CSV flattens the scores


def test_atomic_write_leaves_no_temp_files(tmp_path):
    store = ResultStore(tmp_path)
    store.create({})
    for i in range(3):
        store.write(RunRecord(run="a", method="lora", status="ok", train_s=float(i)))
    assert [p.name for p in store.runs_dir.iterdir()] == ["a.json"]
    assert store.read("a").train_s == 2.0


def test_record_from_dict_ignores_unknown_keys():
    names = {f.name for f in fields(RunRecord)}
    r = RunRecord.from_dict({"method": "x", "method_type": "x", "future_field": 1})
    assert r.run == "x" and "future_field" not in names


def test_records_written_before_the_rename_read_as_today():
    """Until 2026-12-02 a record's `method` held the run's name and `method_type` the method."""
    old = RunRecord.from_dict({"method": "lora-r8", "method_type": "lora", "status": "ok", "eval_accuracy": 0.9,
                               "base_accuracy": 0.5, "eval_f1": None})
    assert (old.run, old.method, old.eval, old.base) == ("lora-r8", "lora", {"accuracy": 0.9}, {"accuracy": 0.5})


def test_a_narrow_terminal_keeps_every_run_name_and_says_what_it_left_out():
    import io

    from rich.console import Console

    from peftbench.report import print_records

    records = [RunRecord(run=name, method=name.split("-")[0], status="ok", trainable_params=148_224,
                         trainable_pct=0.65, peak_mem_mib=150.3, est_peak_mib=150.7, peak_rss_mib=789.0,
                         train_tokens_per_s=1361.0, latency_ms_p50=8.4, latency_ms_p50_merged=6.76,
                         adapter_size_mb=0.6, base={"accuracy": 0.565, "f1": 0.431},
                         eval={"accuracy": 0.995, "f1": 0.995})
               for name in ("full", "lora-r16", "qlora-r8", "a-rather-long-run-name")]
    for width, expect_left_out in ((80, True), (120, True), (250, False)):
        buf = io.StringIO()
        print_records(records, Console(width=width, file=buf), title="t")
        text = buf.getvalue()
        assert all(r.run in text for r in records), (width, text)
        assert all(len(line) <= width for line in text.splitlines()), width
        assert "accuracy base → eval" in text  # the score is never what goes
        assert ("not shown at this width" in text) == expect_left_out, (width, text)
