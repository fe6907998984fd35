"""The embedded default, as the README's main command runs it, cut to a few steps: every method of
suites/smoke.yaml through `peftbench run` (real worker processes, the real pretrained MiniLM, the baseline
evaluation before training, latency, saving and merging). What fails on a user's fresh machine fails here."""

from __future__ import annotations

import math

import yaml

from peftbench import methods
from peftbench.results import ResultStore

from ..conftest import REPO, invoke, write_suite


def test_every_smoke_method_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_HEARTBEAT_S", "0")  # a heartbeat line at every event (output is not a terminal)
    data = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    # Only the sizes shrink: same model, task, methods, settings, precision and phases as the main job.
    data["dataset"].update(train_examples=48, eval_examples=32)
    data["training"].update(steps=3, memory_profile_steps=2)
    data["latency"].update(warmup=1, repeats=3)
    suite = write_suite(tmp_path, data)
    result = invoke("run", suite, "--results-dir", tmp_path / "results")
    assert result.exit_code == 0, result.output
    (root,) = (tmp_path / "results").iterdir()
    records = ResultStore(root).records()
    assert [r.run for r in records] == ["full", "lora-r4", "lora-r16", "qlora-r8", "prefix", "prompt", "ia3"]
    # every failing method at once (tools/drift.py reports this message per package version)
    bad = {r.run: f"{r.status}: {r.error}" for r in records if r.status != "ok" or r.error}
    assert not bad, bad  # an error on an ok run: e.g. a worker that crashed at exit after writing its record
    for r in records:
        for value in (r.score("loss", base=True), r.score("accuracy", base=True), r.score("loss"),
                      r.score("accuracy"), r.train_loss_last):
            assert value is not None and math.isfinite(value), r.run
        assert r.latency_ms_p50 > 0 and r.peak_mem_mib > 0 and r.trainable_params > 0
        mergeable = methods.get(r.method).unmergeable_reason() is None
        assert (r.latency_ms_p50_merged is not None) == mergeable, r.run
    assert f"{len(records)}/{len(records)} runs ok" in result.stdout
    assert "lora-r4: train, step 3/3, train loss" in result.stderr  # what a piped run shows while it works
