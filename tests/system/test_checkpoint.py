"""runner.checkpoint_every: a worker killed mid-training, resumed with `--resume`, ends with the weights an
uninterrupted run of the same seed ends with (checkpoint.py)."""

from __future__ import annotations

import json

import pytest

from peftbench.results import ResultStore
from peftbench.runner import run_suite
from peftbench.suite import load_suite

from ..conftest import invoke, write_suite

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

# LoRA (its dropout draws from torch's RNG every step) and bottleneck adapters (not peft: its own save), 8 steps,
# a checkpoint every 3: a kill after step 5 resumes from step 3's.
METHODS = [{"method": "lora", "ranks": [4], "dropout": 0.1}, {"method": "bottleneck"}]


def suite_file(tmp_path, tiny_causal, name):
    data = {**tiny_causal, "methods": METHODS}
    data["training"] = {**data["training"], "steps": 8}
    data["runner"] = {**data["runner"], "checkpoint_every": 3, "save_adapters": True}
    return write_suite(tmp_path, data, f"{name}.yaml")


def trained(run_dir, run) -> dict:
    (weights,) = (run_dir / "adapters" / run).glob("*.safetensors")
    return load_file(str(weights))


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_with_the_uninterrupted_weights(tmp_path, tiny_causal,
                                                                                          monkeypatch):
    straight = run_suite(load_suite(suite_file(tmp_path, tiny_causal, "a")), tmp_path / "a-results")
    assert all(r.status == "ok" and r.resumed_from_step is None for r in straight.records())
    assert {r.run: r.checkpoints_saved for r in straight.records()} == {"lora-r4": 2, "bottleneck": 2}  # 3, 6

    path = suite_file(tmp_path, tiny_causal, "b")
    monkeypatch.setenv("PEFTBENCH_FAULT", "lora-r4:step5")  # SIGKILL once step 5 is done
    assert invoke("run", path, "--results-dir", tmp_path / "b-results").exit_code == 1
    (run_dir,) = (tmp_path / "b-results").iterdir()
    assert "SIGKILL" in json.loads((run_dir / "runs" / "lora-r4.json").read_text())["error"]
    saved = torch.load(run_dir / "checkpoints" / "lora-r4.pt", weights_only=True)
    assert saved["step"] == 3 and len(saved["losses"]) == 3
    assert not list((run_dir / "checkpoints").glob("*.tmp"))  # written whole, then renamed

    monkeypatch.delenv("PEFTBENCH_FAULT")
    result = invoke("run", path, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    resumed = {r.run: r for r in ResultStore(run_dir).records()}
    assert resumed["lora-r4"].resumed_from_step == 3 and resumed["lora-r4"].checkpoints_saved == 1  # step 6
    assert "resumed at step 3" in resumed["lora-r4"].peak_mem_kind
    assert resumed["bottleneck"].resumed_from_step is None  # kept from the first attempt
    assert not (run_dir / "checkpoints" / "lora-r4.pt").exists()  # removed once the run is ok
    first = {r.run: r for r in straight.records()}
    for run in ("lora-r4", "bottleneck"):
        a, b = trained(straight.root, run), trained(run_dir, run)
        assert a.keys() == b.keys() and a
        for name in a:  # the same CPU, threads and order of operations: equal to the bit
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=f"{run}: {name}")
        assert resumed[run].train_loss_first == first[run].train_loss_first
        assert resumed[run].train_loss_last == first[run].train_loss_last
        assert resumed[run].eval == first[run].eval
    # the resumed run's timing covers only its own steps after its warm-up (4 to 8: untimed 4-5, timed 6-8)
    assert resumed["lora-r4"].train_s is not None and resumed["lora-r4"].train_s > 0
