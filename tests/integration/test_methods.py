"""Every registered method, trained for a few steps on tiny models in this process (torch, CPU, seconds each)."""

from __future__ import annotations

import math

import pytest

from peftbench import methods

from ..conftest import TINY_CAUSAL, TINY_CLASSIFICATION, applicable, spec_for

torch = pytest.importorskip("torch")

ALL = sorted(methods.load_all())
COMMON = ["trainable_params", "total_params", "trainable_pct", "peak_mem_mib", "est_peak_mib", "peak_rss_mib",
          "train_s",
          "train_tokens_per_s", "train_loss_first", "train_loss_last", "latency_ms_p50", "latency_ms_p90",
          "adapter_size_mb", "latency_cv", "wall_s"]
BY_TASK = {
    "classification": [],
    "causal_lm": ["gen_ms_per_token", "prefill_ms", "decode_ms_per_token"],
}


def independent_trainable_count(spec) -> int:
    """Rebuild the trained model and count trainable elements by numel (right for non-quantized tensors)."""
    from peftbench import models
    from peftbench.context import make_context

    suite = spec.suite
    method = methods.get(spec.run.method)
    settings = method.Settings.model_validate(spec.run.settings)
    path = models.model_path(suite.model)
    tok = models.load_tokenizer(suite.model, path)
    model = models.load_prepared(suite, method, settings, make_context(suite, path), path, tok)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def records():
    """Run every method on both tiny suites once; tests below read the records."""
    from peftbench import worker

    out = {}
    for task, base in (("classification", TINY_CLASSIFICATION), ("causal_lm", TINY_CAUSAL)):
        for name in ALL:
            spec = spec_for(applicable(base, name), name)
            record = worker.new_record(spec)
            try:
                worker.run(spec, record)
            except Exception as err:  # noqa: BLE001 - keep the other methods' results; the test for this one reports it
                record.error = f"{type(err).__name__}: {err}"
            out[task, name] = (spec, record)
    return out


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
@pytest.mark.parametrize("name", ALL)
def test_method_runs_and_record_is_complete(records, task, name):
    spec, r = records[task, name]
    assert r.status == "ok", r.error
    missing = [k for k in COMMON + BY_TASK[task] if getattr(r, k) is None]
    assert not missing, missing
    if task == "causal_lm":  # the generation, whole and split into the prompt's prefill and each further token
        assert r.prefill_ms > 0 and r.decode_ms_per_token >= 0
    from peftbench import metrics, tasks

    wanted = tasks.get(task).metrics  # every metric of the task kind, before and after training
    assert set(r.eval) == set(r.base) == set(wanted) and all(math.isfinite(v) for v in r.eval.values())
    per_row = tasks.get(task).score_rows(r.eval_per_row, list(range(r.eval_rows)))  # the same scores, from the rows
    assert per_row["loss"] == pytest.approx(r.eval["loss"], rel=1e-4)
    assert {k: v for k, v in per_row.items() if k != "loss"} == pytest.approx(
        {k: v for k, v in r.eval.items() if k != "loss"}, rel=1e-4)
    assert metrics.PRIMARY[task] in wanted
    assert math.isfinite(r.train_loss_first) and math.isfinite(r.train_loss_last)
    assert 0 < r.trainable_params <= r.total_params
    assert r.trainable_pct == pytest.approx(100 * r.trainable_params / r.total_params)
    assert r.peak_mem_mib > 0 and r.peak_rss_mib > r.peak_mem_mib  # RSS holds the tensors and the interpreter too
    assert r.latency_ms_p50 <= r.latency_ms_p90
    assert r.run.startswith(name) and r.method == name


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
@pytest.mark.parametrize("name", ALL)
def test_trainable_params_match_an_independent_count(records, task, name):
    spec, r = records[task, name]
    assert r.status == "ok", r.error
    assert r.trainable_params == independent_trainable_count(spec)


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_full_trains_everything_and_qlora_counts_4bit_weights_in_full(records, task):
    full, lora, qlora = (records[task, n][1] for n in ("full", "lora", "qlora"))
    assert full.trainable_params == full.total_params
    # same LoRA adapters on the same architecture: peft's counter unpacks the 4-bit weights, so totals agree
    lora_spec, qlora_spec = records[task, "lora"][0], records[task, "qlora"][0]
    if lora_spec.run.settings["ranks"] == qlora_spec.run.settings["ranks"]:
        assert qlora.trainable_params == lora.trainable_params
        assert qlora.total_params == lora.total_params


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
@pytest.mark.parametrize("name", ALL)
def test_merged_inference_is_measured_or_explained(records, task, name):
    spec, r = records[task, name]
    assert r.status == "ok", r.error
    method = methods.get(name)
    if method.unmergeable_reason():  # nothing to merge (full, BitFit), or not mergeable: the note says which
        assert r.merge_note and r.latency_ms_p50_merged is None and r.merge_max_abs_diff is None
        return
    assert r.latency_ms_p50_merged > 0
    assert (r.gen_ms_per_token_merged is not None) == (task == "causal_lm")
    assert (r.decode_ms_per_token_merged is not None) == (task == "causal_lm")
    if method.traits.quantized_base:  # merged into 4- or 8-bit weights: re-quantization moves the outputs
        assert 0 < r.merge_max_abs_diff < 1.0 and "quantized" in r.merge_note
    else:  # an exact merge: fp32 rounding only
        assert r.merge_max_abs_diff < 1e-4, r.merge_max_abs_diff


def test_bitfit_is_refused_before_loading_on_a_model_without_biases(tmp_path):
    """The tiny Llama has no bias: BitFit has nothing to train there, and the suite check says so in one line
    before any worker starts (the memory model's footprint raises it)."""
    from peftbench.errors import PeftbenchError
    from peftbench.runner import check_runs
    from peftbench.suite import LoadedSuite, parse_suite

    suite, runs = parse_suite({**TINY_CAUSAL, "methods": [{"method": "bitfit"}]})
    loaded = LoadedSuite(path="s.yaml", sha256="", suite=suite, runs=runs)
    with pytest.raises(PeftbenchError, match="run bitfit: bitfit: this llama model has no bias terms"):
        check_runs(loaded, tmp_path)


def test_bottleneck_and_bitfit_counts_match_the_formulas(records):
    """MiniLM-L6 (6 layers, hidden 384, intermediate 1536, 2 labels), counted by hand. Bottleneck (Houlsby,
    reduction 16: m = 24): two adapters per block of 2*384*24 + 24 + 384 each, plus the 384->2 head. BitFit: the
    biases of 6 linears per block (3 x 384 for q, k, v, 384 attention output, 1536 intermediate, 384 output), two
    LayerNorms per block and the embeddings' (384 each), the pooler's (384) and the head's (2), plus the head's
    weight (384 x 2)."""
    bottleneck = records["classification", "bottleneck"][1]
    assert bottleneck.trainable_params == 6 * 2 * (2 * 384 * 24 + 24 + 384) + (384 * 2 + 2)
    bitfit = records["classification", "bitfit"][1]
    per_block = 4 * 384 + 1536 + 384 + 2 * 384
    assert bitfit.trainable_params == 6 * per_block + 384 + 384 + 2 + 384 * 2
    assert bitfit.total_params == records["classification", "full"][1].total_params  # nothing added


def test_lora_count_matches_the_formula(records):
    """MiniLM-L6: 6 layers, hidden 384, LoRA r8 on query and value, plus the 384->2 classifier head."""
    r = records["classification", "lora"][1]
    rank = records["classification", "lora"][0].run.settings["ranks"][0]
    assert r.trainable_params == 6 * 2 * rank * (384 + 384) + (384 * 2 + 2)


def test_peak_memory_is_repeatable_on_cpu():
    """The profiler's live-tensor peak is deterministic for a fixed seed and fixed shapes (to the byte)."""
    from peftbench import worker

    peaks = []
    for _ in range(2):
        spec = spec_for(TINY_CAUSAL, "lora")
        record = worker.new_record(spec)
        worker.run(spec, record)
        peaks.append(record.peak_mem_mib)
    assert peaks[0] == peaks[1]


def test_rows_that_leave_no_room_for_the_target_are_left_out_and_counted(tmp_path):
    """A prompt as long as max_length would train on no target token (a batch of them gives a NaN loss): such rows
    are left out, counted in the record and said in its data note; when none is left the run says why."""
    import copy
    import json

    long_prompt = " ".join(["word"] * 40)  # 40 tokens and more: past max_length 24
    rows = [{"input": "copy this please", "output": "this"}] * 12 + [{"input": long_prompt, "output": "x"}] * 4
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    base = copy.deepcopy(TINY_CAUSAL)
    base["dataset"] = {"path": str(data), "eval_examples": 4, "seed": 0}
    from peftbench import worker

    spec = spec_for(base, "lora")
    record = worker.run(spec, worker.new_record(spec))
    assert record.status == "ok" and math.isfinite(record.train_loss_last)
    assert record.rows_dropped > 0 and record.train_rows + record.eval_rows + record.rows_dropped == 16
    assert "left out: their prompt leaves no room for the target" in record.data_note

    base["training"]["max_length"] = 3  # nothing fits
    spec = spec_for(base, "lora")
    with pytest.raises(Exception, match="no training row fits in training.max_length 3"):
        worker.run(spec, worker.new_record(spec))
