"""The training loop's optimizer: a bf16 full fine-tuning really trains (issue: the 7B comparison, point 1).

torch's AdamW adds each update to the 16-bit weight, where an update below half a unit in the last place rounds
away; at full fine-tuning's learning rates most bf16 weights then never change. training.make_optimizer gives 16-bit
trainable weights optimi's AdamW with Kahan summation. The control (torch's AdamW, as before) shows the failure
the test would otherwise miss.
"""

from __future__ import annotations

import copy

import pytest

from ..conftest import TINY_CAUSAL, spec_for

torch = pytest.importorskip("torch")

from peftbench import data as data_mod  # noqa: E402 - after the torch skip
from peftbench import methods, models, training  # noqa: E402
from peftbench.context import make_context  # noqa: E402
from peftbench.measure import PeakMemory  # noqa: E402

STEPS, LR = 10, 1e-5


def _full_updates(precision: str) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Each weight's change over STEPS steps of the worker's own `train` of full fine-tuning (fp32 values)."""
    base = copy.deepcopy(TINY_CAUSAL)
    base["model"]["config_overrides"] = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
                                         "num_key_value_heads": 2}
    base["training"].update(precision=precision, steps=STEPS)
    spec = spec_for(base, "full", learning_rate=LR)
    suite, method = spec.suite, methods.get("full")
    settings = method.Settings.model_validate(spec.run.settings)
    rows = data_mod.load_rows(suite.dataset, suite.model.task, None, None, None)
    path = models.model_path(suite.model)
    tokenizer = models.load_tokenizer(suite.model, path)
    ctx = make_context(suite, path)
    max_len = suite.training.max_length
    enc = ctx.task.encode(ctx.task.fit(rows.train, tokenizer, max_len), tokenizer, max_len)
    model = models.load_prepared(suite, method, settings, ctx, path, tokenizer)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    losses, *_ = training.train(model, ctx, suite.training, enc, LR, STEPS, PeakMemory(ctx.device), method)
    return {n: p.detach().float() - before[n] for n, p in model.named_parameters()}, losses


def _changed(updates: dict[str, torch.Tensor]) -> float:
    return sum(int((u != 0).sum()) for u in updates.values()) / sum(u.numel() for u in updates.values())


def _cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    flat = [torch.cat([d[n].flatten() for n in sorted(d)]) for d in (a, b)]
    return float(torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0))


@pytest.fixture(scope="module")
def fp32_updates():
    return _full_updates("fp32")[0]


def test_bf16_full_fine_tuning_changes_most_weights_and_follows_fp32(fp32_updates):
    updates, losses = _full_updates("bf16")
    assert _changed(updates) > 0.5
    assert _cosine(updates, fp32_updates) > 0.8  # the same direction as the fp32 run's update
    assert all(torch.isfinite(torch.tensor(losses)))


def test_control_torch_adamw_in_bf16_leaves_most_weights_unchanged(fp32_updates, monkeypatch):
    monkeypatch.setattr(training, "make_optimizer",
                        lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd))
    updates, _ = _full_updates("bf16")
    assert _changed(updates) < 0.3
    assert _cosine(updates, fp32_updates) < 0.6


def test_the_optimizer_follows_the_trainable_dtype():
    fp32 = [torch.nn.Parameter(torch.zeros(4))]
    bf16 = [torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))]
    assert training.optimizer_name(fp32) == training.PLAIN
    assert type(training.make_optimizer(fp32, 1e-3, 0.0)) is torch.optim.AdamW
    assert training.optimizer_name(bf16) == training.KAHAN
    opt = training.make_optimizer(bf16, 1e-3, 0.0)
    assert type(opt).__module__.startswith("optimi")
    bf16[0].grad = torch.ones(4, dtype=torch.bfloat16)
    opt.step()
    assert opt.state[bf16[0]]["kahan_comp"] is not None  # the compensation buffer exists
    # a small 16-bit copy (a classifier head in a bf16 run) beside fp32 adapters: torch's AdamW, as the memory model
    mixed = [torch.nn.Parameter(torch.zeros(100)), torch.nn.Parameter(torch.zeros(10, dtype=torch.bfloat16))]
    assert training.optimizer_name(mixed) == training.PLAIN


def test_building_the_tiny_llama_leaves_the_global_rng_alone(tmp_path, monkeypatch):
    """The worker seeds, then resolves the model: a worker that built the tiny Llama (the first run on a fresh
    machine) used to draw its LoRA weights from the RNG the build had reseeded, and trained differently from the
    same run once the model was cached."""
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    path = models.tiny_llama_path({"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2,
                                   "num_key_value_heads": 1})
    assert str(tmp_path) in path  # it was built here, now
    assert torch.equal(torch.get_rng_state(), state)
