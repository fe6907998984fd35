"""`peftbench merge` round trip: adapters trained by the harness's worker, merged, saved, reloaded and checked."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from ..conftest import TINY_CAUSAL, TINY_CLASSIFICATION, assert_user_error, invoke, spec_for

torch = pytest.importorskip("torch")


def train(base: dict, method: str, adapter_dir):
    from peftbench import worker

    spec = spec_for(base, method, adapter_dir=adapter_dir)
    record = worker.new_record(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # the worker's progress protocol
        worker.run(spec, record)
    assert record.status == "ok", record.error
    return adapter_dir


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "causal-lora": train(TINY_CAUSAL, "lora", root / "causal-lora"),
        "causal-qlora": train(TINY_CAUSAL, "qlora", root / "causal-qlora"),
        "cls-ia3": train(TINY_CLASSIFICATION, "ia3", root / "cls-ia3"),
        "causal-prefix": train(TINY_CAUSAL, "prefix", root / "causal-prefix"),
    }


@pytest.mark.parametrize("name", ["causal-lora", "causal-qlora", "cls-ia3"])
def test_merge_round_trip(adapters, tmp_path, name):
    from transformers import AutoConfig

    out = tmp_path / "merged"
    result = invoke("merge", "--adapter", adapters[name], "--out", out)
    assert result.exit_code == 0, result.output
    assert "match" in result.stdout and "MISMATCH" not in result.stdout
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "adapter_config.json").exists()  # a standalone model, not an adapter
    assert AutoConfig.from_pretrained(out).model_type in ("llama", "bert")


def test_merge_in_bf16_uses_the_16_bit_tolerance(adapters, tmp_path):
    result = invoke("merge", "--adapter", adapters["causal-lora"], "--out", tmp_path / "m", "--dtype", "bf16")
    assert result.exit_code == 0, result.output
    assert "tolerance" in result.stdout


def test_a_wrong_merge_fails_with_exit_1(adapters, tmp_path, monkeypatch):
    """If the saved model did not carry the adapter (here: peft's unload instead of merge), the check catches it."""
    from peft.tuners.tuners_utils import BaseTuner  # PeftModel forwards merge_and_unload to its tuner

    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, *a, **k: self.unload())
    result = invoke("merge", "--adapter", adapters["causal-lora"], "--out", tmp_path / "m")
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.stdout


def test_merge_errors(adapters, tmp_path):
    assert_user_error(invoke("merge", "--adapter", adapters["causal-prefix"], "--out", tmp_path / "p"),
                      "PREFIX_TUNING adapters cannot be merged")
    assert_user_error(invoke("merge", "--adapter", tmp_path / "missing", "--out", tmp_path / "o"),
                      "adapter directory not found")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert_user_error(invoke("merge", "--adapter", adapters["causal-lora"], "--out", tmp_path / "full"),
                      "exists and is not empty")
    (tmp_path / "plain").mkdir()
    assert_user_error(invoke("merge", "--adapter", tmp_path / "plain", "--out", tmp_path / "o2"),
                      "no adapter_config.json")


def test_class_names_travel_with_the_adapter_into_the_merged_model(tmp_path):
    """A classifier trained on text labels saves its class names beside the adapter; the merged model keeps them."""
    import copy

    from transformers import AutoConfig

    data = tmp_path / "reviews.csv"
    data.write_text("review,sentiment\n" + "".join(f"a fine film {i},pos\na dull film {i},neg\n" for i in range(12)))
    base = copy.deepcopy(TINY_CLASSIFICATION)
    base["dataset"] = {"path": str(data), "text_column": "review", "label_column": "sentiment", "eval_examples": 4}
    adapter = train(base, "lora", tmp_path / "adapter")
    assert json.loads((adapter / "label_names.json").read_text()) == ["neg", "pos"]
    out = tmp_path / "merged"
    result = invoke("merge", "--adapter", adapter, "--out", out)
    assert result.exit_code == 0, result.output
    assert AutoConfig.from_pretrained(out).id2label == {0: "neg", 1: "pos"}


def test_merge_mistakes_are_one_line(adapters, tmp_path):
    """A base that is not the adapter's, and a truncated weights file."""
    import shutil

    assert_user_error(invoke("merge", "--adapter", adapters["causal-lora"], "--out", tmp_path / "a",
                             "--base", "builtin:tiny-llama"),  # the default tiny Llama is 128 wide, not 32
                      "does not fit base model")
    broken = tmp_path / "broken"
    shutil.copytree(adapters["causal-lora"], broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert_user_error(invoke("merge", "--adapter", broken, "--out", tmp_path / "b"), "unreadable", "corrupt")
