"""`run --ray`: a suite's jobs as tasks on a local Ray instance (started by the test, on the CPU). The records
equal a sequential run's, a worker that dies is recorded as failed while the other run goes on, and the manifest
says where each run ran."""

from __future__ import annotations

import pytest

from peftbench.runner import cpu_slots, run_suite
from peftbench.suite import load_suite

from .test_runner import suite_with

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray():
    from peftbench.ray_runner import connect

    yield connect("local", False, 1)
    ray.shutdown()


def test_ray_tasks_give_the_records_of_a_sequential_run(tmp_path, tiny_causal, monkeypatch, local_ray):
    methods = [{"method": "lora", "ranks": [4]}, {"method": "ia3"}]
    loaded = load_suite(suite_with(tmp_path, tiny_causal, methods))
    sequential = run_suite(loaded, tmp_path / "seq", slots=cpu_slots(1, 1)).records()  # 1 thread, as each task
    monkeypatch.setenv("PEFTBENCH_FAULT", "ia3:train")  # forwarded to the task: that worker SIGKILLs itself
    store = run_suite(loaded, tmp_path / "ray", ray=local_ray)
    by_run = {r.run: r for r in store.records()}
    lora, ia3 = by_run["lora-r4"], by_run["ia3"]
    seq = sequential[0]
    assert lora.status == "ok", lora.error
    assert (lora.trainable_params, lora.train_loss_first, lora.train_loss_last, lora.peak_mem_mib) == \
        (seq.trainable_params, seq.train_loss_first, seq.train_loss_last, seq.peak_mem_mib)
    assert lora.eval == seq.eval and "x1 threads" in lora.device
    assert ia3.status == "failed" and "SIGKILL" in ia3.error
    placed = store.manifest()["ray"]
    assert placed["address"] == "local" and set(placed["runs"]) == {"lora-r4", "ia3"}
    assert all(p["node"] for p in placed["runs"].values())
    assert (store.logs_dir / "lora-r4.log").is_file() and (store.root / "specs" / "ia3.json").is_file()
