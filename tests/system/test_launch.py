"""Runs across two processes on a CPU (`--launcher accelerate`, a method entry's `launch`): gloo ranks through
`accelerate launch`, started by the real runner. The ranks must end with the same weights, a launch whose ranks
do not share gradients must fail, and the record must hold each rank's figures (docs/distributed.md).

Tests that need several GPUs (NCCL, FSDP moving shards to the GPUs) are marked `gpu` and skipped here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from peftbench import methods
from peftbench.launch import STRATEGIES, Launch, refusal
from peftbench.results import ResultStore

from ..conftest import REPO, TINY_CAUSAL, invoke, write_suite


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One suite: LoRA in one process and in two (DDP), full fine-tuning in one and in two (FSDP2, ZeRO-3), and IA3
    in two processes whose gradients are not averaged (fault injection: the control that must fail)."""
    tmp = tmp_path_factory.mktemp("launch")
    two = {"processes": 2}
    suite = {**TINY_CAUSAL, "methods": [
        {"method": "lora", "ranks": [4], "learning_rate": 3e-3},
        {"method": "lora", "ranks": [4], "learning_rate": 3e-3, "launch": {**two, "strategy": "ddp"}},
        {"method": "full", "learning_rate": 1e-3},
        {"method": "full", "learning_rate": 1e-3, "launch": {**two, "strategy": "fsdp"}},
        {"method": "full", "learning_rate": 1e-3, "launch": {**two, "strategy": "zero3"}},
        {"method": "ia3", "learning_rate": 3e-2, "launch": {**two, "strategy": "ddp"}},
    ]}
    suite["training"] = {**suite["training"], "steps": 4}
    path = write_suite(tmp, suite)
    os.environ["PEFTBENCH_FAULT"] = "ia3-ddpx2:nosync"
    try:
        result = invoke("run", path, "--results-dir", tmp / "results")
    finally:
        del os.environ["PEFTBENCH_FAULT"]
    (root,) = (tmp / "results").iterdir()
    return result, ResultStore(root)


def test_ranks_train_one_model_and_the_record_holds_every_rank(launched):
    result, store = launched
    assert result.exit_code == 1, result.output  # the control fails, as it must
    lora, ddp = store.read("lora-r4"), store.read("lora-r4-ddpx2")
    assert lora.status == ddp.status == "ok", (lora.error, ddp.error)
    assert (ddp.world_size, ddp.strategy, ddp.ranks_in_sync) == (2, "ddp", True)
    assert (lora.world_size, lora.strategy, lora.ranks_in_sync) == (1, "", None)
    assert len(ddp.peak_mem_mib_ranks) == 2 and ddp.peak_mem_mib == max(ddp.peak_mem_mib_ranks) > 0
    assert ddp.train_tokens_per_s == pytest.approx(2 * ddp.train_tokens_per_s_per_process)
    assert ddp.trainable_params == lora.trainable_params and ddp.total_params == lora.total_params
    # the first step's loss is the mean over both ranks' halves of a global batch of 2 x batch_size rows, whose
    # first half is the one-process run's batch: a different number, from the same initial weights
    assert ddp.train_loss_first != lora.train_loss_first
    assert set(ddp.eval) == set(lora.eval) and ddp.eval_rows == lora.eval_rows  # evaluated once, on every row
    assert ddp.latency_ms_p50 is None and "one-process runs" in ddp.merge_note
    assert "x1 threads" in ddp.device  # each of the 2 ranks has half of the 2 cores


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharded_full_fine_tuning_trains_as_the_others(launched, strategy):
    _, store = launched
    sharded = store.read(f"full-{strategy}x2")
    assert sharded.status == "ok", sharded.error
    assert (sharded.world_size, sharded.strategy, sharded.ranks_in_sync) == (2, strategy, True)
    assert len(sharded.peak_mem_mib_ranks) == 2 and sharded.peak_mem_mib == max(sharded.peak_mem_mib_ranks)
    # the same training from the same global batches (and as DDP: the matrix test)
    assert sharded.train_loss_last == pytest.approx(store.read("full-fsdpx2").train_loss_last, rel=1e-5)
    # the memory model's per-process figure shards the gradients and optimizer states. The measured per-rank peak
    # is not compared with the one-process run's: on this model (98% embedding, which FSDP gathers whole for the
    # step) the saving is a few MiB, and the ranks' CPU peaks move by as much between repeats (gloo's buffers
    # live as long as each collective takes: docs/distributed.md)
    assert sharded.est_peak_mib < store.read("full").est_peak_mib


def test_ranks_that_do_not_share_gradients_fail_the_run(launched):
    result, store = launched
    control = store.read("ia3-ddpx2")
    assert control.status == "failed" and control.ranks_in_sync is False
    assert "did not train one model" in control.error
    assert "ia3-ddpx2" in result.output


def test_summary_gives_scaling_against_the_one_process_run(launched):
    _, store = launched
    import pandas as pd

    summary = pd.read_csv(store.root / "summary.csv").set_index("run")
    row = summary.loc["lora-r4-ddpx2"]
    assert row.scaling_vs == "lora-r4" and row.world_size == 2 and row.strategy == "ddp"
    speedup = row.train_tokens_per_s / summary.loc["lora-r4", "train_tokens_per_s"]
    assert row.scaling_speedup == pytest.approx(speedup)
    assert row.scaling_efficiency == pytest.approx(speedup)  # a CPU: both runs had the same cores
    assert pd.isna(summary.loc["lora-r4", "scaling_vs"])


def test_every_method_strategy_pair_runs_or_is_refused(tmp_path):
    """The matrix of the README: every pair that launch.refusal lets through trains 3 steps on 2 ranks through
    the worker's own run, with the ranks in sync at the end."""
    out = tmp_path / "matrix.json"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    from peftbench.launch import free_port

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
           "--num_processes", "2", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "tests.system.launch_matrix", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    expected = {f"{name}:{s}" for name, m in methods.load_all().items() if not m.traits.needs_cuda
                for s in STRATEGIES if not refusal(name, m.traits, Launch(processes=2, strategy=s))}
    assert set(results) == expected
    bad = {k: v["error"] for k, v in results.items() if v["status"] != "ok" or v["ranks_in_sync"] is not True}
    assert not bad, bad
    assert all(v["world_size"] == 2 for v in results.values())
    # every strategy averages the same gradients of the same global batches: the same training as DDP, to rounding
    # (an optimizer built over the root's gathered copies after the base evaluation once left full fine-tuning's
    # embeddings untrained under FSDP, and only this comparison saw it: the ranks agreed with each other)
    for pair in [k for k in results if not k.endswith(":ddp")]:
        ddp = results[pair.split(":")[0] + ":ddp"]["loss_last"]
        assert results[pair]["loss_last"] == pytest.approx(ddp, rel=1e-5), pair


def _gpus() -> int:
    torch = pytest.importorskip("torch")
    return torch.cuda.device_count()


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_ddp_and_fsdp_stay_in_sync(tmp_path):
    """NCCL ranks, one GPU each; FSDP loads into CPU memory and moves each rank's shard to its GPU."""
    suite = {**TINY_CAUSAL, "methods": [
        {"method": "lora", "ranks": [4], "launch": {"processes": 2, "strategy": "ddp"}},
        {"method": "full", "learning_rate": 1e-3, "launch": {"processes": 2, "strategy": "fsdp"}},
    ]}
    suite["training"] = {**suite["training"], "device": "cuda", "precision": "bf16"}
    result = invoke("run", write_suite(tmp_path, suite), "--results-dir", tmp_path / "results")
    assert result.exit_code == 0, result.output
    (root,) = (tmp_path / "results").iterdir()
    for r in ResultStore(root).records():
        assert r.ranks_in_sync and r.world_size == 2 and r.device.startswith("cuda"), r
        assert len(r.peak_mem_mib_ranks) == 2 and r.peak_reserved_mib >= r.peak_mem_mib
