"""trainer: trl: a method trained through TRL's SFTTrainer beside the harness's own loop, with the same model, rows,
labels and measurement definitions (trl_loop.py)."""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest

from ..conftest import TINY_CAUSAL, assert_user_error, invoke, spec_for, write_suite

torch = pytest.importorskip("torch")
pytest.importorskip("trl")


@pytest.fixture(scope="module")
def pair():
    from peftbench import worker

    base = copy.deepcopy(TINY_CAUSAL)
    base["training"]["steps"] = 6
    out = {}
    for trainer in ("harness", "trl"):
        spec = spec_for(base, "lora", ranks=[4], trainer=trainer, learning_rate=1e-2)
        out[trainer] = worker.run(spec, worker.new_record(spec))
    return out


def test_a_trl_run_is_measured_as_a_harness_run(pair):
    harness, trl = pair["harness"], pair["trl"]
    assert trl.status == "ok" and trl.run == "lora-r4-trl" and trl.trainer.startswith("trl ")
    assert harness.trainer == "peftbench"
    assert trl.trainable_params == harness.trainable_params and trl.total_params == harness.total_params
    assert trl.train_s > 0 and trl.train_tokens_per_s > 0 and trl.peak_mem_mib > 0
    assert set(trl.eval) == set(harness.eval) and all(math.isfinite(v) for v in trl.eval.values())
    assert trl.base == harness.base  # the same model before training, evaluated by the same code
    assert trl.latency_ms_p50 > 0 and trl.merge_max_abs_diff is not None  # the same steps after training


def test_trl_sees_the_same_first_batch_labels_and_loss(pair):
    """transformers' sampler draws the first permutation from the seed as the harness does, so step 1 is the same
    batch of the same model: equal losses mean the same rows, the same target masking and the same loss."""
    assert pair["trl"].train_loss_first == pytest.approx(pair["harness"].train_loss_first, rel=1e-6)
    assert pair["trl"].train_loss_last != pair["harness"].train_loss_last  # then each stack trains its own way


def test_what_trl_cannot_run_is_refused_in_one_line(tmp_path, tiny_causal, tiny_cls):
    cls = write_suite(tmp_path, {**tiny_cls, "methods": [{"method": "lora", "trainer": "trl"}]}, "c.yaml")
    assert_user_error(invoke("validate", cls), "(trainer: trl): SFTTrainer trains causal language models")
    ada = write_suite(tmp_path, {**tiny_causal, "methods": [{"method": "adalora", "trainer": "trl"}]}, "a.yaml")
    assert_user_error(invoke("validate", ada), "adalora needs a call after every optimizer step")


def test_a_missing_trl_is_one_line(tmp_path, tiny_causal, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    path = write_suite(tmp_path, {**tiny_causal, "methods": [{"method": "lora", "trainer": "trl"}]})
    assert_user_error(invoke("validate", path), "trainer: trl needs the trl package")
