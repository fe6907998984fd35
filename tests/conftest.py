"""Test settings: no hub access, a private cache for the built tiny models, tiny suites as plain dicts."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("PEFTBENCH_CACHE", tempfile.mkdtemp(prefix="peftbench-test-cache-"))

REPO = Path(__file__).resolve().parent.parent

# A classification suite on the pretrained MiniLM and a causal suite on a very small Llama, both seconds per run.
TINY_CLASSIFICATION = {
    "name": "tiny-cls",
    "model": {"name": "builtin:minilm", "task": "classification"},
    "dataset": {"builtin": "sentiment-negation", "train_examples": 32, "eval_examples": 16},
    "training": {"steps": 3, "batch_size": 4, "max_length": 24, "device": "cpu", "memory_profile_steps": 2},
    "evaluation": {"batch_size": 16},
    "latency": {"batch_size": 1, "seq_len": 16, "warmup": 1, "repeats": 3},
    "runner": {"timeout_s": 300},
    "methods": [{"method": "lora", "ranks": [4]}],
}
TINY_CAUSAL = {
    "name": "tiny-causal-test",
    "model": {
        "name": "builtin:tiny-llama",
        "task": "causal_lm",
        "config_overrides": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                             "num_key_value_heads": 1},
    },
    "dataset": {"builtin": "word-copy", "train_examples": 32, "eval_examples": 8},
    "training": {"steps": 3, "batch_size": 4, "max_length": 24, "device": "cpu", "memory_profile_steps": 2},
    "evaluation": {"batch_size": 8, "max_new_tokens": 4},
    "latency": {"batch_size": 1, "seq_len": 16, "warmup": 1, "repeats": 3, "gen_new_tokens": 2, "gen_repeats": 1},
    "runner": {"timeout_s": 300},
    "methods": [{"method": "lora", "ranks": [4]}],
}


@pytest.fixture
def tiny_cls() -> dict:
    return copy.deepcopy(TINY_CLASSIFICATION)


@pytest.fixture
def tiny_causal() -> dict:
    return copy.deepcopy(TINY_CAUSAL)


def spec_for(base: dict, method: str, adapter_dir: Path | None = None, **settings):
    """The worker spec of the first run of `method` (with `settings`) on the tiny suite `base`."""
    from peftbench.protocol import WorkerSpec
    from peftbench.suite import parse_suite

    suite, runs = parse_suite({**base, "methods": [{"method": method, **settings}]})
    return WorkerSpec(suite=suite, run=runs[0], adapter_dir=str(adapter_dir) if adapter_dir else None)


def applicable(base: dict, method: str) -> dict:
    """`base`, or for a method with nothing to train on its tiny Llama (BitFit: no biases) the same suite on a tiny
    Llama with biases (LlamaConfig's attention_bias and mlp_bias)."""
    from peftbench import catalog, methods
    from peftbench.arch import NotApplicable, arch_from_config

    model = base["model"]
    m = methods.get(method)
    config = catalog.resolve(model["name"], model.get("config_overrides")).config
    try:
        m.footprint(arch_from_config(config, model["task"]), m.Settings.model_validate({"method": method}))
    except NotApplicable:
        overrides = {**model.get("config_overrides", {}), "attention_bias": True, "mlp_bias": True}
        return {**base, "model": {**model, "config_overrides": overrides}}
    return base


def invoke(*args):
    """A peftbench command run in this process through Click's CliRunner."""
    from click.testing import CliRunner

    from peftbench.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *fragments):
    """The command failed as a user error must: one line on stderr, exit code 2, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def write_suite(tmp_path: Path, data: dict, name: str = "suite.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
