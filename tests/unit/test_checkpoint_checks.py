"""runner.checkpoint_every: what cannot continue from a checkpoint is refused in one line before anything runs
(the resume itself: tests/system/test_checkpoint.py)."""

from __future__ import annotations

from ..conftest import assert_user_error, invoke, write_suite


def checkpointed(tiny_causal, methods):
    return {**tiny_causal, "runner": {**tiny_causal["runner"], "checkpoint_every": 2}, "methods": methods}


def test_a_method_whose_state_lives_outside_its_tensors_is_refused(tmp_path, tiny_causal):
    path = write_suite(tmp_path, checkpointed(tiny_causal, [{"method": "adalora"}]))
    assert_user_error(invoke("validate", path), "methods[0] (adalora): cannot continue from a checkpoint")


def test_a_multi_process_run_is_refused(tmp_path, tiny_causal):
    path = write_suite(tmp_path, checkpointed(tiny_causal, [{"method": "lora", "launch": {"processes": 2}}]))
    assert_user_error(invoke("validate", path), "runner.checkpoint_every: a multi-process run does not checkpoint")


def test_ray_is_refused(tmp_path, tiny_causal):
    path = write_suite(tmp_path, checkpointed(tiny_causal, [{"method": "lora"}]))
    assert_user_error(invoke("run", path, "--ray", "local"), "--ray with runner.checkpoint_every: not supported")


def test_zero_is_not_a_checkpoint_interval(tmp_path, tiny_causal):
    data = checkpointed(tiny_causal, [{"method": "lora"}])
    data["runner"]["checkpoint_every"] = 0
    assert_user_error(invoke("validate", write_suite(tmp_path, data)), "runner.checkpoint_every")
