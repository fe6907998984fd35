"""The CLI through Click's CliRunner: outputs, exit codes, one-line errors. No torch in this process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from peftbench import runner as runner_mod
from peftbench.results import ResultStore, RunRecord

from ..conftest import REPO, assert_user_error, invoke, write_suite


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("run", "validate", "methods", "report"):
        assert cmd in result.stdout


def test_help_and_validate_do_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from peftbench.cli import main; "
        f"r = CliRunner().invoke(main, ['validate', {str(REPO / 'suites' / 'smoke.yaml')!r}]); "
        "r2 = CliRunner().invoke(main, ['methods']); "
        "assert r.exit_code == 0 and r2.exit_code == 0, (r.output, r2.output); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_validate_ok():
    result = invoke("validate", REPO / "suites" / "smoke.yaml")
    assert result.exit_code == 0
    assert "7 runs" in result.stdout and "lora-r4" in result.stdout


def test_validate_reports_every_problem_on_one_line(tmp_path, tiny_cls):
    tiny_cls["model"]["colour"] = "red"
    tiny_cls["methods"] = [{"method": "lorra"}]
    path = write_suite(tmp_path, tiny_cls)
    assert_user_error(invoke("validate", path), str(path), "2 problems", "model.colour: unknown key", "lorra")


def test_validate_missing_file(tmp_path):
    assert_user_error(invoke("validate", tmp_path / "none.yaml"), "file not found")


def test_run_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [\n")
    assert_user_error(invoke("run", path), "invalid YAML")


def test_run_unknown_method(tmp_path, tiny_cls):
    tiny_cls["methods"] = [{"method": "dora2"}]
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls)), "unknown method 'dora2'")


def test_run_missing_dataset_file(tmp_path, tiny_cls):
    tiny_cls["dataset"] = {"path": str(tmp_path / "missing.jsonl")}
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--results-dir", tmp_path / "r"),
                      "dataset file not found")
    assert not (tmp_path / "r").exists()  # nothing started, nothing written


def test_run_model_not_available_offline(tmp_path, tiny_cls):
    tiny_cls["model"]["name"] = "no-such-org/no-such-model"
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--results-dir", tmp_path / "r"),
                      "not in the local hub cache", "HF_HUB_OFFLINE")


def _hub_refuses(monkeypatch, error_class, message: str):
    """The hub reached, and refusing: huggingface_hub raises its typed errors with the HTTP status first."""
    import httpx2
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/x/resolve/main/config.json"))

    def download(*args, **kwargs):
        raise error_class(message, response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)


def test_a_hub_dataset_out_of_reach_stops_before_anything(tmp_path, tiny_causal):
    tiny_causal["dataset"] = {"hub": "tatsu-lab/alpaca", "prompt_template": "{instruction}\n", "train_examples": 8,
                              "eval_examples": 4}
    result = invoke("run", write_suite(tmp_path, tiny_causal), "--results-dir", tmp_path / "r")
    assert_user_error(result, "tatsu-lab/alpaca", "hub is not reachable", "path:")
    assert not (tmp_path / "r").exists()


def test_a_gated_model_says_what_to_do(tmp_path, tiny_cls, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    _hub_refuses(monkeypatch, GatedRepoError, "401 Client Error. (Request ID: Root=1-abc)\n\nCannot access gated "
                 "repo for url https://huggingface.co/meta-llama/Llama-2-7b-hf/resolve/main/config.json.")
    tiny_cls["model"]["name"] = "meta-llama/Llama-2-7b-hf"
    assert_user_error(invoke("validate", write_suite(tmp_path, tiny_cls)), "is gated",
                      "https://huggingface.co/meta-llama/Llama-2-7b-hf", "hf auth login")


def test_another_hub_refusal_keeps_the_line_that_explains_it(tmp_path, tiny_cls, monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    _hub_refuses(monkeypatch, HfHubHTTPError, "500 Server Error. (Request ID: Root=1-abc)\n\nThe server broke.")
    tiny_cls["model"]["name"] = "org/model"
    result = invoke("validate", write_suite(tmp_path, tiny_cls))
    assert_user_error(result, "500 Server Error.", "The server broke.")
    assert "Request ID" not in result.stderr


def test_a_bf16_suite_on_a_gpu_without_bf16_stops_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(runner_mod, "cuda_bf16", lambda: (False, "Tesla T4"))
    result = invoke("run", REPO / "suites" / "7b.yaml", "--results-dir", tmp_path / "r")
    assert_user_error(result, "bf16", "Tesla T4", "fp16-mixed")
    assert not (tmp_path / "r").exists()


def test_a_bf16_suite_on_device_auto_is_checked_on_the_gpu_it_would_find(tmp_path, tiny_cls, monkeypatch):
    monkeypatch.setattr(runner_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(runner_mod, "cuda_bf16", lambda: (False, "Tesla T4"))
    tiny_cls["training"].update(device="auto", precision="bf16")
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--results-dir", tmp_path / "r"), "Tesla T4")


def test_run_7b_without_cuda_stops_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "cuda_available", lambda: False)
    result = invoke("run", REPO / "suites" / "7b.yaml", "--results-dir", tmp_path / "r")
    assert_user_error(result, "needs a CUDA GPU")
    assert not (tmp_path / "r").exists()


def test_run_cuda_only_setting_on_cpu_device(tmp_path, tiny_cls):
    tiny_cls["training"]["precision"] = "fp16-mixed"
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls)), "fp16-mixed needs CUDA")


def test_resume_of_a_foreign_directory(tmp_path, tiny_cls):
    (tmp_path / "elsewhere").mkdir()
    result = invoke("run", write_suite(tmp_path, tiny_cls), "--resume", tmp_path / "elsewhere")
    assert_user_error(result, "no manifest.json")


def test_methods_lists_every_method_and_dataset():
    result = invoke("methods")
    assert result.exit_code == 0
    for name in ("full", "lora", "qlora", "prefix", "prompt", "ia3", "sentiment-negation", "word-copy"):
        assert name in result.stdout


def test_report_table_and_exports(tmp_path):
    store = ResultStore(tmp_path / "run")
    store.create({"runs": [{"name": "lora-r8"}, {"name": "prompt"}]})
    store.write(RunRecord(run="lora-r8", method="lora", status="ok", trainable_params=1000,
                          trainable_pct=0.1, base={"accuracy": 0.5}, eval={"accuracy": 0.9}, peak_mem_mib=12.5))
    store.write(RunRecord(run="prompt", method="prompt", status="timeout", error="no result after 5 s"))
    result = invoke("report", store.root, "--csv", tmp_path / "r.csv", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "lora-r8" in result.stdout and "0.500 → 0.900" in result.stdout
    assert "prompt: timeout: no result after 5 s" in result.stdout
    assert len((tmp_path / "r.csv").read_text().strip().splitlines()) == 3
    summary = json.loads((tmp_path / "r.json").read_text())  # one row per run, its mean over seeds
    assert [r["run"] for r in summary] == ["lora-r8", "prompt"] and summary[0]["eval_accuracy"] == 0.9
    assert invoke("report", store.root, "--json", tmp_path / "p.json", "--per-seed").exit_code == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["eval"] == {"accuracy": 0.9}  # the records themselves


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_report_errors(tmp_path, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    result = invoke("report", target)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_run_stops_when_a_cpu_run_cannot_fit_in_memory(tmp_path, tiny_cls, monkeypatch):
    """The memory model predicts each CPU run's tensors before any worker starts; a run that cannot fit stops it."""
    import psutil

    class Tiny:
        available = 2**20  # 1 MiB: far below MiniLM's ~100 MiB of weights and activations

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    results = tmp_path / "r"
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--results-dir", results),
                      "run lora-r4 is predicted to hold", "GiB of memory available")
    assert not results.exists()  # stopped before the results directory was made


# ---- results folders as people find them, and writing next to them -----------------------------------------------


def _folder(tmp_path):
    store = ResultStore(tmp_path / "run")
    store.create({"suite_sha256": "x", "runs": [{"name": "lora-r8"}, {"name": "ia3"}, {"name": "full"}]})
    store.write(RunRecord(run="lora-r8", method="lora", status="ok", eval={"accuracy": 0.9}))
    store.write(RunRecord(run="full", method="full", status="ok", eval={"accuracy": 0.95}))
    text = json.dumps({"run": "ia3", "method": "ia3", "status": "ok", "eval": {"accuracy": 0.8}})
    (store.runs_dir / "ia3.json").write_text(text[: len(text) // 2])  # a write cut short
    return store


def test_a_truncated_record_hides_nothing_else(tmp_path):
    store = _folder(tmp_path)
    result = invoke("report", store.root)
    assert result.exit_code == 0, result.output
    assert "lora-r8" in result.stdout and "full" in result.stdout
    assert "unreadable" in result.stdout and "runs/ia3.json" in result.stdout


def test_a_truncated_manifest_still_reports_and_cannot_be_resumed(tmp_path, tiny_cls):
    store = _folder(tmp_path)
    store.manifest_path.write_text('{"suite_sha256": "x", "ru')
    result = invoke("report", store.root)
    assert result.exit_code == 0 and "manifest.json" in result.stdout and "lora-r8" in result.stdout
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--resume", store.root),
                      "manifest.json", "unreadable")


def test_recommend_reads_the_good_records_of_a_broken_folder(tmp_path):
    store = _folder(tmp_path)
    result = invoke("recommend", "--gpu-gb", "24", "--examples", "500", "--model", "llama-2-7b",
                    "--results", store.root, "--task", "classification")
    assert result.exit_code == 0, result.output


def test_report_never_writes_over_the_folders_own_files(tmp_path):
    store = _folder(tmp_path)
    manifest = store.manifest_path.read_bytes()
    for target in (store.manifest_path, store.runs_dir / "full.json", store.root / "results.csv"):
        assert_user_error(invoke("report", store.root, "--csv", target), "results folder's own file")
    assert store.manifest_path.read_bytes() == manifest


def test_report_overwrites_an_existing_file_only_with_force(tmp_path):
    store = _folder(tmp_path)
    out = tmp_path / "report.csv"
    out.write_text("mine")
    assert_user_error(invoke("report", store.root, "--csv", out), "exists", "--force")
    assert out.read_text() == "mine"
    assert invoke("report", store.root, "--csv", out, "--force").exit_code == 0
    assert out.read_text().startswith("run,method")
    assert_user_error(invoke("report", store.root, "--json", tmp_path / "no" / "such" / "r.json"),
                      "does not exist")


def test_run_stops_when_the_results_dir_cannot_be_made(tmp_path, tiny_cls):
    (tmp_path / "afile").write_text("x")
    assert_user_error(invoke("run", write_suite(tmp_path, tiny_cls), "--results-dir", tmp_path / "afile" / "r"),
                      "is a file")


# ---- validate knows what run knows, before any weights load -----------------------------------------------------


def test_validate_catches_what_run_would_reject(tmp_path, tiny_cls, tiny_causal):
    def check(suite, *fragments):
        assert_user_error(invoke("validate", write_suite(tmp_path, suite)), *fragments)

    bad = {**tiny_cls, "model": {"name": "builtin:minilmm", "task": "classification"}}
    check(bad, "unknown built-in model 'builtin:minilmm'")
    check({**tiny_cls, "model": {"name": "builtin:tiny-llama", "task": "classification"}},
          "builtin:tiny-llama is a causal_lm model")
    check({**tiny_cls, "dataset": {"path": str(tmp_path / "none.csv")}}, "dataset file not found")
    (tmp_path / "d.txt").write_text("x")
    check({**tiny_cls, "dataset": {"path": str(tmp_path / "d.txt")}}, "unsupported format")
    check({**tiny_cls, "methods": [{"method": "lora", "target_modules": ["q_proj", "v_proj"]}]},
          "run lora-r8: target_modules q_proj, v_proj match no linear layer of this bert model", "query")
    check({**tiny_causal, "methods": [{"method": "ia3", "target_modules": ["query"]}]},
          "run ia3: target_modules query match no linear layer of this llama model")


def test_validate_checks_the_rows_and_says_what_it_decided(tmp_path, tiny_cls):
    data = tmp_path / "reviews.csv"
    data.write_text("review,sentiment\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(20)))
    suite = {**tiny_cls, "dataset": {"path": "reviews.csv", "text_column": "review", "label_column": "sentiment"}}
    result = invoke("validate", write_suite(tmp_path, suite))  # the data path is relative to the suite's folder
    assert result.exit_code == 0, result.output
    assert "0 = 'neg', 1 = 'pos'" in result.stdout and "20 held out for evaluation" in result.stdout
    data.write_text("review,sentiment\ngood,pos\n,neg\n" + "".join(f"x {i},pos\n" for i in range(5)))
    assert_user_error(invoke("validate", write_suite(tmp_path, suite)), "column 'review' is empty", "row 2")


def test_run_resolves_the_classes_into_the_manifest_before_any_worker(tmp_path, tiny_cls):
    from peftbench.runner import check_suite
    from peftbench.suite import load_suite

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"t{i},{lab}\n" for i, lab in enumerate(["a", "b", "c"] * 8)))
    loaded = load_suite(write_suite(tmp_path, {**tiny_cls, "dataset": {"path": str(data), "eval_examples": 3}}))
    check_suite(loaded, hub_data=True)
    assert loaded.resolved()["model"]["num_labels"] == 3
    assert loaded.resolved()["model"]["label_names"] == ["a", "b", "c"]


def test_a_rank_above_the_layer_width_is_said(tmp_path, tiny_causal):
    suite = {**tiny_causal, "methods": [{"method": "lora", "ranks": [64]}]}  # the tiny Llama is 32 wide
    result = invoke("validate", write_suite(tmp_path, suite))
    assert result.exit_code == 0 and "rank 64 is above the smaller dimension" in result.stdout


def test_model_paths_resolve_like_dataset_paths(tmp_path, tiny_cls):
    """A relative model directory is looked for from the current directory, then from the suite's folder; one
    that looks like a path and is nowhere is 'not found', never a hub-cache miss."""
    import shutil

    from peftbench import models

    local = tmp_path / "models" / "minilm"
    local.parent.mkdir()
    shutil.copytree(models.minilm_path(), local)
    suite = {**tiny_cls, "model": {"name": "models/minilm", "task": "classification"}}
    result = invoke("validate", write_suite(tmp_path, suite))
    assert result.exit_code == 0, result.output
    suite["model"]["name"] = "./models/nothere"
    assert_user_error(invoke("validate", write_suite(tmp_path, suite)), "model directory not found: ./models/nothere")
    suite["model"]["name"] = "models/deeper/nothere"
    assert_user_error(invoke("validate", write_suite(tmp_path, suite)), "model directory not found")


def test_run_checks_the_rows_once_before_any_worker(tmp_path, tiny_cls):
    """A data problem used to start one worker per method and fail each with the same error."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n{"text": "meh", "lab')
    results = tmp_path / "r"
    assert_user_error(invoke("run", write_suite(tmp_path, {**tiny_cls, "dataset": {"path": str(data)}}),
                             "--results-dir", results), "line 3: not valid JSON")
    assert not results.exists()


def test_run_parallel_beyond_the_cores_is_one_line_before_anything_runs(tmp_path, tiny_causal):
    import os

    from ..conftest import write_suite

    cores = len(os.sched_getaffinity(0))
    result = invoke("run", write_suite(tmp_path, tiny_causal), "--parallel", cores + 1, "--results-dir",
                    tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert f"--parallel {cores + 1}: CPU runs get at least one core each" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_run_ray_without_ray_installed_is_one_line(tmp_path, tiny_causal, monkeypatch):
    import sys

    from ..conftest import write_suite

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray then raises ImportError
    result = invoke("run", write_suite(tmp_path, tiny_causal), "--ray", "local", "--results-dir",
                    tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == 'error: --ray needs the ray package: pip install "peftbench[ray]" (or pip ' \
                                    'install ray)'


def test_run_ray_and_parallel_together_is_one_line(tmp_path, tiny_causal):
    from ..conftest import write_suite

    result = invoke("run", write_suite(tmp_path, tiny_causal), "--ray", "local", "--parallel", "2")
    assert result.exit_code == 2 and "--ray and --parallel" in result.output
