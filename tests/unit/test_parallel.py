"""Where `--parallel N` puts the workers (runner.plan_slots), without starting any: GPU suites get one GPU each,
CPU suites an equal share of the cores; too few of either is one line before anything runs."""

from __future__ import annotations

import pytest

from peftbench.errors import PeftbenchError
from peftbench.runner import plan_slots
from peftbench.suite import load_suite

from ..conftest import write_suite


def _loaded(tmp_path, base, device):
    base["training"]["device"] = device
    return load_suite(write_suite(tmp_path, base))


def test_one_at_a_time_keeps_the_workers_environment(tmp_path, tiny_causal):
    slots = plan_slots(_loaded(tmp_path, tiny_causal, "cpu"), 1, ids=lambda: pytest.fail("no GPU query"))
    assert [s.env for s in slots] == [{}]


def test_cpu_runs_split_the_cores(tmp_path, tiny_causal):
    slots = plan_slots(_loaded(tmp_path, tiny_causal, "cpu"), 2, ids=lambda: pytest.fail("no GPU query"),
                       cores=lambda: 5)
    assert [s.env for s in slots] == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 2
    assert [s.name for s in slots] == ["cpu 1/2 (2 threads)", "cpu 2/2 (2 threads)"]


def test_more_cpu_runs_than_cores_is_one_line(tmp_path, tiny_causal):
    with pytest.raises(PeftbenchError, match="--parallel 3: CPU runs get at least one core each, and this "
                                             "machine has 2"):
        plan_slots(_loaded(tmp_path, tiny_causal, "cpu"), 3, cores=lambda: 2)


def test_gpu_runs_get_one_visible_gpu_each(tmp_path, tiny_causal):
    slots = plan_slots(_loaded(tmp_path, tiny_causal, "cuda"), 2, ids=lambda: ["3", "5", "7"])
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]


def test_auto_on_a_gpu_machine_schedules_gpus_and_on_a_cpu_machine_cores(tmp_path, tiny_causal):
    loaded = _loaded(tmp_path, tiny_causal, "auto")
    assert plan_slots(loaded, 2, ids=lambda: ["0", "1"])[1].env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert plan_slots(loaded, 2, ids=lambda: [], cores=lambda: 2)[1].env["OMP_NUM_THREADS"] == "1"


def test_more_gpu_runs_than_gpus_is_one_line(tmp_path, tiny_causal, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(PeftbenchError, match=r"--parallel 4: one GPU per run, and this machine shows 2 "
                                             r"\(CUDA_VISIBLE_DEVICES=0,1\)"):
        plan_slots(_loaded(tmp_path, tiny_causal, "cuda"), 4)


def test_parallel_below_one_is_refused(tmp_path, tiny_causal):
    with pytest.raises(PeftbenchError, match="at least 1"):
        plan_slots(_loaded(tmp_path, tiny_causal, "cpu"), 0)


def test_after_an_interrupt_no_worker_starts_and_none_is_recorded(tmp_path, tiny_causal):
    from peftbench import runner
    from peftbench.protocol import WorkerSpec
    from peftbench.results import ResultStore

    loaded = _loaded(tmp_path, tiny_causal, "cpu")
    plan = loaded.jobs()[0]
    store = ResultStore(tmp_path / "results")
    store.create({})
    runner.kill_live_workers()  # what Ctrl-C does in a parallel suite
    try:
        with pytest.raises(runner.Interrupted):
            runner.run_worker(plan, WorkerSpec(suite=loaded.suite, run=plan), store, 60, {}, lambda ev: None)
    finally:
        runner._STOPPING.clear()
    assert not store.has(plan.key)


def test_parallel_cpu_runs_must_fit_in_memory_together(tmp_path, tiny_causal, monkeypatch):
    import psutil

    from peftbench.estimate import estimate_run
    from peftbench.runner import check_runs

    tiny_causal["methods"] = [{"method": "lora", "ranks": [4]}, {"method": "ia3"}]
    loaded = _loaded(tmp_path, tiny_causal, "cpu")
    suite = loaded.resolved()
    peaks = [estimate_run(suite, p.method, p.settings, device="cpu").peak_bytes for p in loaded.runs]
    room = type("Memory", (), {"available": max(peaks) * 1.2})()  # one run fits, two together do not
    monkeypatch.setattr(psutil, "virtual_memory", lambda: room)
    check_runs(loaded, tmp_path)  # one at a time: fine
    with pytest.raises(PeftbenchError, match="--parallel 2: lora-r4, ia3 together are predicted|--parallel 2: ia3, "
                                             "lora-r4 together are predicted"):
        check_runs(loaded, tmp_path, at_once=2)
