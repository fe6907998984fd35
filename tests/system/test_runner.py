"""The real subprocess runner: a 2-method suite, a worker that dies, a timeout, and killing + resuming the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from peftbench.runner import preflight, run_suite
from peftbench.suite import load_suite

from ..conftest import REPO, write_suite


def suite_with(tmp_path: Path, base: dict, methods: list[dict], **runner) -> Path:
    data = {**base, "methods": methods}
    data["runner"] = {**data["runner"], **runner}
    return write_suite(tmp_path, data)


def test_two_method_suite_through_worker_processes(tmp_path, tiny_causal):
    loaded = load_suite(suite_with(tmp_path, tiny_causal, [{"method": "lora", "ranks": [4]}, {"method": "ia3"}]))
    preflight(loaded)
    store = run_suite(loaded, tmp_path / "results")
    records = store.records()
    assert [r.run for r in records] == ["lora-r4", "ia3"]
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    assert all(r.peak_rss_mib > 100 for r in records)  # a real worker process: torch alone is > 100 MiB
    manifest = store.manifest()
    assert manifest["suite_sha256"] == loaded.sha256
    assert manifest["provenance"]["packages"]["torch"] and manifest["provenance"]["python"]
    assert manifest["resolved_suite"]["model"]["name"] == "builtin:tiny-llama"
    assert (store.logs_dir / "lora-r4.log").is_file()


def test_a_dying_worker_is_recorded_and_the_suite_goes_on(tmp_path, tiny_causal, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_FAULT", "lora-r4:train")  # that worker SIGKILLs itself when training starts
    loaded = load_suite(suite_with(tmp_path, tiny_causal, [{"method": "lora", "ranks": [4]}, {"method": "prompt"}]))
    records = {r.run: r for r in run_suite(loaded, tmp_path / "results").records()}
    assert records["lora-r4"].status == "failed"
    assert "SIGKILL" in records["lora-r4"].error
    assert records["prompt"].status == "ok", records["prompt"].error


def test_a_run_that_fails_while_its_memory_is_profiled_exits_cleanly(tmp_path, tiny_causal):
    """peft refuses targets that do not exist while the model loads, inside the profiler window: the failure is
    recorded, and the worker still exits with code 0 (a profiler left running made it die of SIGSEGV at exit)."""
    entry = {"method": "lora", "ranks": [4], "target_modules": ["nope"]}
    loaded = load_suite(suite_with(tmp_path, tiny_causal, [entry]))
    (record,) = run_suite(loaded, tmp_path / "results").records()
    assert record.status == "failed" and "nope" in record.error
    assert "after writing its result" not in record.error, record.error


def test_a_run_past_its_timeout_is_killed_and_recorded(tmp_path, tiny_causal):
    loaded = load_suite(suite_with(tmp_path, tiny_causal, [{"method": "ia3"}], timeout_s=2))
    (record,) = run_suite(loaded, tmp_path / "results").records()
    assert record.status == "timeout" and "2 s" in record.error


def test_killing_the_cli_mid_suite_then_resuming_keeps_finished_runs(tmp_path, tiny_causal):
    methods = [{"method": "lora", "ranks": [4]}, {"method": "ia3"}, {"method": "prompt"}]
    suite_path = suite_with(tmp_path, tiny_causal, methods)
    results = tmp_path / "results"
    cmd = [sys.executable, "-c", "from peftbench.cli import main; main()", "run", str(suite_path),
           "--results-dir", str(results)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    run_dir = None
    while time.monotonic() < deadline:  # wait until the first run is done and the second has started
        dirs = list(results.glob("*/"))
        if dirs and (dirs[0] / "runs" / "lora-r4.json").is_file() and (dirs[0] / "specs" / "ia3.json").is_file():
            run_dir = dirs[0]
            break
        time.sleep(0.2)
    assert run_dir is not None, "the first run did not finish in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = (run_dir / "runs" / "lora-r4.json").read_bytes()
    time.sleep(3)  # the orphaned worker, if any, would have time to write
    assert not (run_dir / "runs" / "ia3.json").exists(), "the in-flight worker outlived its parent"

    result = subprocess.run([*cmd[:5], "--resume", str(run_dir)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "lora-r4: kept from the earlier run" in result.stderr
    assert (run_dir / "runs" / "lora-r4.json").read_bytes() == first  # not re-run
    names = sorted(p.stem for p in (run_dir / "runs").glob("*.json"))
    assert names == ["ia3", "lora-r4", "prompt"]
    assert all(json.loads((run_dir / "runs" / f"{n}.json").read_text())["status"] == "ok" for n in names)
    assert len(json.loads((run_dir / "manifest.json").read_text())["resumed_at"]) == 1
    assert (run_dir / "results.csv").read_text().count("\n") == 4  # header + three runs


def test_run_exits_1_when_a_run_fails_and_resume_runs_only_that_one_again(tmp_path, tiny_causal, monkeypatch):
    from ..conftest import invoke

    monkeypatch.setenv("PEFTBENCH_FAULT", "lora-r4:train")  # that worker dies once training starts
    suite_path = suite_with(tmp_path, tiny_causal, [{"method": "lora", "ranks": [4]}, {"method": "ia3"}])
    result = invoke("run", suite_path, "--results-dir", tmp_path / "results")
    assert result.exit_code == 1, result.output
    assert "1/2 runs ok" in result.stdout and "--resume" in result.stdout and "logs/lora-r4.log" in result.stdout
    (run_dir,) = (tmp_path / "results").iterdir()
    kept = (run_dir / "runs" / "ia3.json").read_bytes()

    monkeypatch.delenv("PEFTBENCH_FAULT")  # the cause is fixed
    result = invoke("run", suite_path, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "lora-r4: run again (the earlier run was failed" in result.stderr
    assert "ia3: kept from the earlier run" in result.stderr
    assert (run_dir / "runs" / "ia3.json").read_bytes() == kept
    assert json.loads((run_dir / "runs" / "lora-r4.json").read_text())["status"] == "ok"


def test_seeds_are_separate_workers_and_records_and_resume_treats_them_so(tmp_path, tiny_causal, monkeypatch):
    from ..conftest import invoke

    monkeypatch.setenv("PEFTBENCH_FAULT", "lora-r4@s1:train")  # one seed's worker dies
    suite_path = write_suite(tmp_path, {**tiny_causal, "seeds": [0, 1, 2]})
    results = tmp_path / "results"
    result = invoke("run", suite_path, "--results-dir", results)
    assert result.exit_code == 1, result.output
    (run_dir,) = results.glob("*/")
    names = sorted(p.stem for p in (run_dir / "runs").glob("*.json"))
    assert names == ["lora-r4@s0", "lora-r4@s1", "lora-r4@s2"]
    records = {n: json.loads((run_dir / "runs" / f"{n}.json").read_text()) for n in names}
    assert [records[n]["seed"] for n in names] == [0, 1, 2]
    assert records["lora-r4@s1"]["status"] == "failed" and "SIGKILL" in records["lora-r4@s1"]["error"]
    ok = [records["lora-r4@s0"], records["lora-r4@s2"]]
    assert ok[0]["status"] == ok[1]["status"] == "ok"
    # the seed drives the adapter's initial draws and the data order: the same run, different training
    assert ok[0]["train_loss_first"] != ok[1]["train_loss_first"]
    assert "lora-r4" in result.stdout and "ok 2/3" in result.stdout

    monkeypatch.delenv("PEFTBENCH_FAULT")
    kept = (run_dir / "runs" / "lora-r4@s0.json").read_bytes()
    result = invoke("run", suite_path, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "lora-r4@s0: kept from the earlier run" in result.stderr and "lora-r4@s1: run again" in result.stderr
    assert (run_dir / "runs" / "lora-r4@s0.json").read_bytes() == kept
    summary = (run_dir / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and ",ok,3,0 1 2," in summary[1]


def test_parallel_runs_overlap_and_give_the_records_of_a_sequential_run(tmp_path, tiny_causal):
    """--parallel 2 on the CPU: two workers at once (each with half the cores), and every record the same as the
    sequential run's: status, counts, losses, scores and the profiler's peak (timings differ, and say so)."""
    from peftbench.runner import Progress, cpu_slots

    methods = [{"method": "lora", "ranks": [4]}, {"method": "ia3"}]
    loaded = load_suite(suite_with(tmp_path, tiny_causal, methods))
    sequential = run_suite(loaded, tmp_path / "seq", slots=cpu_slots(1, 1)).records()  # 1 thread, as each below
    times: dict[str, list[float]] = {}
    hooks = Progress(run_started=lambda plan, i, n: times.setdefault(plan.key, []).append(time.monotonic()),
                     run_finished=lambda plan, record: times[plan.key].append(time.monotonic()))
    store = run_suite(loaded, tmp_path / "par", progress=hooks, slots=cpu_slots(2, 2))
    parallel = store.records()
    (a0, a1), (b0, b1) = times["lora-r4"], times["ia3"]
    assert a0 < b1 and b0 < a1, times  # the two runs were in progress at the same time
    assert store.manifest()["parallel"] == [["cpu 1/2 (1 threads)", "cpu 2/2 (1 threads)"]]
    assert [r.run for r in parallel] == [r.run for r in sequential] == ["lora-r4", "ia3"]
    for s, p in zip(sequential, parallel, strict=True):
        assert s.status == p.status == "ok", (s.error, p.error)
        assert (s.trainable_params, s.total_params) == (p.trainable_params, p.total_params)
        assert (s.train_loss_first, s.train_loss_last) == (p.train_loss_first, p.train_loss_last)
        assert s.eval == p.eval and s.peak_mem_mib == p.peak_mem_mib
        assert "x1 threads" in p.device
