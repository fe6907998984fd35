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
