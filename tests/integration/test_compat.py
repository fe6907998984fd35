"""The library workarounds of peftbench/compat.py, each against the failure it repairs (torch, CPU, seconds each).

- QLoRA on both bitsandbytes CPU paths: the AVX512-BF16 weight repacking is forced on (as on such a CPU) and off
  (as on any other), whatever this machine has, and the worker's whole QLoRA run must work on both.
- Prefix and prompt tuning under transformers' `past_key_values` -> `cache` rename (5.24): the prefix must reach
  the model in training and in generation, and generation must agree with full forward passes.
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest

from ..conftest import TINY_CAUSAL, TINY_CLASSIFICATION, spec_for

torch = pytest.importorskip("torch")

TINY = {"classification": TINY_CLASSIFICATION, "causal_lm": TINY_CAUSAL}


def run_in_process(spec: dict):
    from peftbench import worker

    record = worker.new_record(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # the worker's progress protocol
        worker.run(spec, record)
    return record


def prepared(base: dict, method: str, **settings):
    """The model the worker trains for `method` on a tiny suite, built by the worker's own loader."""
    from peftbench import methods, models
    from peftbench.context import make_context

    spec = spec_for(base, method, **settings)
    suite = spec.suite
    m = methods.get(method)
    path = models.model_path(suite.model)
    tok = models.load_tokenizer(suite.model, path)
    ctx = make_context(suite, path)
    return models.load_prepared(suite, m, m.Settings.model_validate(spec.run.settings), ctx, path, tok), tok


@pytest.fixture(params=[True, False], ids=["avx512bf16-path", "generic-path"])
def bnb_cpu_path(request, monkeypatch):
    """Make every Linear4bit built from now on believe the CPU has (or lacks) AVX512-BF16. `Linear4bit.__init__`
    reads `has_avx512bf16()` from bitsandbytes.nn.modules; patching it there forces the path on any machine."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: request.param)
    return request.param


# ---- QLoRA on both bitsandbytes CPU paths ------------------------------------------------------------------------


def test_the_forced_path_really_repacks_without_the_workaround(bnb_cpu_path):
    """Control: with the workaround undone, an eval-mode forward repacks the 4-bit weights exactly when the path
    is forced on, so the tests below exercise the path that broke training (and would fail without the fix)."""
    from peftbench import compat

    model, _ = prepared(TINY_CLASSIFICATION, "qlora")
    layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)  # the loader's workaround ran
    for m in layers:
        m.support_avx512bf16_for_cpu = bnb_cpu_path  # undo it: as bitsandbytes set it
    model.eval()
    ids = torch.randint(1000, 2000, (2, 8))
    with torch.inference_mode(), contextlib.suppress(Exception):  # the packed kernel may refuse on this CPU
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert (compat.packed_4bit_layers(model) > 0) == bnb_cpu_path


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_qlora_runs_whole_on_both_bitsandbytes_cpu_paths(bnb_cpu_path, task):
    """Baseline evaluation (an eval-mode forward without grad: where repacking happens), training, evaluation,
    latency, saving and merged latency, through the worker's own run."""
    r = run_in_process(spec_for(TINY[task], "qlora"))
    assert r.status == "ok", r.error
    assert r.score("loss", base=True) is not None and math.isfinite(r.score("loss", base=True))
    assert math.isfinite(r.train_loss_first) and math.isfinite(r.train_loss_last) and math.isfinite(r.score("loss"))
    assert r.latency_ms_p50 > 0 and r.latency_ms_p50_merged > 0 and r.adapter_size_mb > 0
    assert 0 < r.merge_max_abs_diff < 1.0  # merged into 4-bit weights: close, not exact


def test_qlora_trains_the_same_on_both_paths(monkeypatch):
    """The CPU feature must not change a QLoRA number that does not depend on timing: losses agree exactly."""
    import bitsandbytes.nn.modules as bnb_modules

    losses = []
    for has in (True, False):
        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda has=has: has)
        r = run_in_process(spec_for(TINY_CLASSIFICATION, "qlora"))
        assert r.status == "ok", r.error
        losses.append((r.base, r.train_loss_first, r.train_loss_last, r.eval, r.peak_mem_mib))
    assert losses[0] == losses[1]


# ---- prefix and prompt tuning: the prefix reaches the model ------------------------------------------------------


def test_accept_kv_prefix_renames_and_advertises():
    from peftbench import compat

    class Backbone(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, **kwargs):
            return cache

    module = Backbone()
    assert compat.takes_kv_cache(module.forward) == "cache"
    assert compat.accept_kv_prefix(module)
    assert compat.takes_kv_cache(module.forward) == "past_key_values"  # what peft looks for
    assert {"cache", "past_key_values"} <= set(__import__("inspect").signature(module.forward).parameters)
    assert module(input_ids=1, past_key_values="prefix") == "prefix"
    assert module(input_ids=1, cache="own") == "own"
    assert not compat.accept_kv_prefix(module)  # already takes past_key_values: nothing to do


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_the_prefix_changes_the_output(task, method):
    """A prefix or soft prompt that silently did not reach the model would leave the logits unchanged when it
    changes. (peft's disable_adapter fails for prompt learning on classifiers, so the comparison is prefix vs
    prefix.)"""
    model, _ = prepared(TINY[task], method)
    model.eval()
    ids = torch.randint(1000, 2000, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        before = model(**batch).logits
        for p in model.prompt_encoder.parameters():
            p.normal_(0, 3.0)
        after = model(**batch).logits
    assert after.shape == before.shape
    assert (after - before).abs().max() > 0.1 * before.abs().max()  # a fresh head's logits are ~0.01


def greedy_logits_check(model, steps: int = 4):
    """(max |generate's logits - a full forward's|, max |generate's - the base model's|) over `steps` steps."""
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231], [101, 2000, 2100, 2200, 2300]])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                             do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        to_full, to_base = 0.0, 0.0
        for step, logits in enumerate(out.logits):
            seq = out.sequences[:, : ids.shape[1] + step]
            full = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
            with model.disable_adapter():
                base = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1]
            to_full = max(to_full, float((logits - full).abs().max()))
            to_base = max(to_base, float((logits - base).abs().max()))
    return to_full, to_base


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_generation_with_a_prefix_agrees_with_full_forwards(method):
    """What the harness's exact match and generation latency rest on: each generated step's logits (KV cache,
    prefix injected by peft) equal a full forward of the same tokens, and differ from the base model's."""
    model, _ = prepared(TINY_CAUSAL, method)
    model.eval()
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.normal_(0, 3.0)
    to_full, to_base = greedy_logits_check(model)
    assert to_full < 1e-4, f"generation disagrees with full forwards by {to_full:.3g}"
    assert to_base > 1e-2


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_the_generation_workaround_is_still_needed(method):
    """Control, where transformers names the cache `cache`: without the workaround, peft's generation is wrong
    (the failure compat.prompt_learning_generation repairs). If this fails, peft has caught up with the rename:
    remove the workaround."""
    from peftbench import compat

    model, _ = prepared(TINY_CAUSAL, method)
    if compat.takes_kv_cache(model.get_base_model().forward) != "cache":
        pytest.skip("this transformers still names the KV cache past_key_values: no workaround installed")
    del model.prepare_inputs_for_generation  # back to peft's own method
    model.eval()
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.normal_(0, 3.0)
    to_full, _ = greedy_logits_check(model)
    assert to_full > 1e-2
