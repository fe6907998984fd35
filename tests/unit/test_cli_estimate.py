"""`peftbench estimate` and `models` through Click's CliRunner: outputs, JSON shape, one-line errors. Neither
imports torch (tests/integration/test_plan.py has `plan`, which builds meta-device models)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from peftbench import catalog
from peftbench.arch import arch_from_config
from peftbench.estimate import Workload, estimate

from ..conftest import REPO, assert_user_error, invoke

LORA_7B = ("estimate", "--model", "llama-2-7b", "--method", "lora", "--rank", "8", "--targets", "q_proj,v_proj",
           "--batch", "4", "--seq-len", "512", "--precision", "bf16", "--grad-ckpt")


def test_estimate_table_names_every_component_and_the_peak():
    result = invoke(*LORA_7B)
    assert result.exit_code == 0, result.output
    for part in ("weights", "optimizer_states", "activations", "logits_loss", "transient", "4,194,304",
                 "peak (PyTorch allocator)", "CUDA context"):
        assert part in result.stdout, part


def test_estimate_json_is_the_memory_model():
    result = invoke(*LORA_7B, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"trainable_params", "total_params", "peak_gib", "cuda_context_gib", "breakdown"} <= set(data)
    assert data["trainable_params"] == 4_194_304 and data["total_params"] == 6_742_609_920
    assert data["cuda_context_gib"] > 0
    arch = arch_from_config(catalog.resolve("llama-2-7b").config)
    from peftbench import methods

    lora = methods.get("lora")
    fp = lora.footprint(arch, lora.Settings(method="lora", ranks=[8], target_modules=["q_proj", "v_proj"]))
    direct = estimate(arch, fp, Workload(batch=4, seq_len=512, precision="bf16", grad_ckpt=True))
    assert data["peak_gib"] == pytest.approx(direct.peak_gib, abs=1e-4)
    assert set(data["breakdown"]) == set(direct.breakdown)


def test_estimate_qlora_all_linear_json():
    result = invoke("estimate", "--model", "llama-2-7b", "--method", "qlora", "--rank", "16", "--targets",
                    "all-linear", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    lora = json.loads(invoke("estimate", "--model", "llama-2-7b", "--method", "lora", "--rank", "16", "--targets",
                             "all-linear", "--json").stdout)
    assert data["trainable_params"] == lora["trainable_params"]
    assert data["breakdown"]["weights"] < lora["breakdown"]["weights"] / 2  # NF4 block linears


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "prefix", "prompt", "ia3"])
@pytest.mark.parametrize("model", ["llama-3.1-8b", "phi-2", "gemma-2b", "qwen2.5-0.5b"])
def test_estimate_every_method_on_catalog_models(model, method):
    result = invoke("estimate", "--model", model, "--method", method, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert 0 < data["trainable_params"] <= data["total_params"] and data["peak_gib"] > 0


def test_estimate_sharded_full_fine_tuning():
    base = ("estimate", "--model", "llama-2-13b", "--method", "full", "--json")
    one = json.loads(invoke(*base).stdout)
    zero3 = json.loads(invoke(*base, "--gpus", "8", "--strategy", "zero3").stdout)
    assert zero3["peak_gib"] < one["peak_gib"] / 3
    assert any("per-GPU" in n for n in zero3["notes"])


def test_estimate_local_config(tmp_path):
    cfg = {k: v for k, v in catalog.resolve("llama-3.2-1b").config.items() if k != "_peftbench"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    by_dir = invoke("estimate", "--model", tmp_path, "--method", "lora", "--json")
    by_name = invoke("estimate", "--model", "llama-3.2-1b", "--method", "lora", "--json")
    assert by_dir.exit_code == 0, by_dir.output
    assert json.loads(by_dir.stdout)["peak_gib"] == json.loads(by_name.stdout)["peak_gib"]


@pytest.mark.parametrize(("args", "fragments"), [
    (("--model", "llama-2-7", "--method", "lora"), ("unknown model 'llama-2-7'", "did you mean 'llama-2-7b'")),
    (("--model", "llama-2-7b", "--method", "lorra"), ("unknown method 'lorra'", "did you mean 'lora'")),
    (("--model", "llama-2-7b", "--method", "prefix", "--rank", "8"), ("--rank does not apply to method prefix",)),
    (("--model", "llama-2-7b", "--method", "lora", "--virtual-tokens", "8"), ("--virtual-tokens does not apply",)),
    (("--model", "llama-2-7b", "--method", "full", "--strategy", "zero3"), ("--strategy zero3 needs --gpus 2",)),
    (("--model", "./missing/config.json", "--method", "lora"), ("model config not found",)),
    (("--model", "no-org/no-model", "--method", "lora"), ("not in the catalog", "HF_HUB_OFFLINE")),
])
def test_estimate_user_errors(args, fragments):
    assert_user_error(invoke("estimate", *args), *fragments)


@pytest.mark.parametrize("args", [("--batch", "0"), ("--seq-len", "-5"), ("--precision", "fp8"), ("--rank", "x")])
def test_estimate_bad_option_values_exit_2(args):
    result = invoke("estimate", "--model", "llama-2-7b", "--method", "lora", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_estimate_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    assert_user_error(invoke("estimate", "--model", tmp_path / "config.json", "--method", "lora"),
                      "no memory model for model_type 't5'")


def test_models_lists_the_catalog():
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("llama-2-7b", "llama-3.1-70b", "mistral-7b", "qwen2.5-0.5b", "phi-2", "gemma-2b"):
        assert name in result.stdout


def test_estimate_and_models_do_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from peftbench.cli import main; "
        "r = CliRunner().invoke(main, ['estimate', '--model', 'llama-2-7b', '--method', 'qlora', '--json']); "
        "r2 = CliRunner().invoke(main, ['models']); "
        "assert r.exit_code == 0 and r2.exit_code == 0, (r.output, r2.output); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused(value):
    assert_user_error(invoke("recommend", "--gpu-gb", value, "--examples", "5", "--json"), "not a finite number")
    assert_user_error(invoke("estimate", "--model", "llama-2-7b", "--method", "lora", "--alpha", value),
                      "not a finite number")


def test_targets_that_match_nothing_are_an_error_not_zero_parameters():
    assert_user_error(invoke("estimate", "--model", "llama-2-7b", "--method", "lora", "--targets", "foo,bar"),
                      "target_modules foo, bar match no linear layer", "q_proj")


def test_a_rank_above_the_layer_width_is_noted():
    result = invoke("estimate", "--model", "llama-2-7b", "--method", "lora", "--rank", "8192")
    assert result.exit_code == 0 and "rank 8192 is above the smaller dimension" in result.stdout
