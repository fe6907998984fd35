"""`peftbench plan` through Click's CliRunner: exact counts from meta-device models (torch, peft), the predicted
peak of every run of a suite, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO, assert_user_error, invoke, write_suite


@pytest.fixture(autouse=True)
def keep_bitsandbytes_visible(monkeypatch):
    """`plan` hides bitsandbytes from its own process (exact.skip_bitsandbytes); in this process it would hide it
    from every later test too (peft and transformers cache what they found), so only a subprocess may."""
    monkeypatch.setattr("peftbench.exact.skip_bitsandbytes", lambda: None)


def test_plan_never_imports_bitsandbytes():
    code = (
        "import sys; from click.testing import CliRunner; from peftbench.cli import main; "
        "r = CliRunner().invoke(main, ['plan', 'suites/smoke.yaml']); "
        "assert r.exit_code == 0, r.output; "
        "assert sys.modules.get('bitsandbytes') is None, 'bitsandbytes imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_plan_7b_suite_against_24_gib():
    result = invoke("plan", REPO / "suites" / "7b.yaml", "--gpu-gb", "24", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    runs = {r["run"]: r for r in data["runs"]}
    assert set(runs) == {"full", "lora-r4", "lora-r8", "lora-r16", "lora-r64", "qlora-r16", "prefix", "prompt", "ia3"}
    assert all(r["counted"] == "meta-device peft" for r in runs.values())
    assert runs["full"]["trainable_params"] == runs["full"]["total_params"] == 6_738_415_616
    assert runs["lora-r8"]["trainable_params"] == 8 * 32 * 4 * (4096 + 4096)  # q, k, v, o at rank 8
    assert runs["full"]["fits"] is False and runs["qlora-r16"]["fits"] is True
    for r in runs.values():
        assert r["need_gib"] == pytest.approx(r["peak_gib"] + r["cuda_context_gib"])
        assert r["fits"] == (r["need_gib"] <= 24 * 0.9)  # recommend's margin: allocator slack, estimate error
    assert not runs["prefix"]["fits"] and 24 * 0.9 < runs["prefix"]["need_gib"] < 24  # 22.4 of 24 GiB: too tight


def test_plan_table_on_the_cpu_smoke_suite():
    result = invoke("plan", REPO / "suites" / "smoke.yaml")
    assert result.exit_code == 0, result.output
    for name in ("full", "lora-r4", "qlora-r8", "prefix", "prompt", "ia3", "meta device"):
        assert name in result.stdout


def test_plan_errors(tmp_path, tiny_cls):
    assert_user_error(invoke("plan", tmp_path / "none.yaml"), "file not found")
    tiny_cls["model"]["name"] = "no-org/no-model"
    assert_user_error(invoke("plan", write_suite(tmp_path, tiny_cls)), "not in the catalog", "HF_HUB_OFFLINE")
    result = invoke("plan", REPO / "suites" / "7b.yaml", "--gpu-gb", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_plan_names_the_run_whose_targets_match_nothing(tmp_path, tiny_cls):
    tiny_cls["methods"] = [{"method": "ia3"}, {"method": "lora", "ranks": [4], "target_modules": ["q_proj"]}]
    assert_user_error(invoke("plan", write_suite(tmp_path, tiny_cls)), "run lora-r4", "match no linear layer")
