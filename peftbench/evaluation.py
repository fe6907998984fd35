"""What the worker (and `peftbench blend`) measures of a model after it is built: task scores on the evaluation
rows, inference latency, and the same inference after merging. Worker side (imports torch).

The task kind scores (peftbench/tasks/); the timings follow measure.py's definitions.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import torch

from .context import RunContext
from .measure import percentile, time_repeated, variation
from .results import RunRecord
from .suite import Suite
from .tasks.base import EvalData, Evaluation


def evaluate(model: Any, ctx: RunContext, suite: Suite, data: EvalData, tokenizer: Any) -> Evaluation:
    """The task's metrics on the evaluation rows (and their per-row data), with the suite's evaluation settings."""
    ev = suite.evaluation
    return ctx.task.evaluate(model, ctx, data, ev.batch_size, tokenizer, ev.max_new_tokens)


def latency_batch(tokenizer: Any, rows: list[dict], suite: Suite, ctx: RunContext) -> dict:
    """A fixed batch of real evaluation text, cut or cycled to exactly seq_len tokens per row."""
    lat = suite.latency
    text = " ".join(ctx.task.text(r) for r in rows[:64])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.pad_token_id]
    need = lat.batch_size * lat.seq_len
    ids = (ids * (need // len(ids) + 1))[:need]
    input_ids = torch.tensor(ids).view(lat.batch_size, lat.seq_len)
    return ctx.to_device({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)})


@dataclass
class Timings:
    """What time_inference measured (measure.py defines each)."""

    latency_ms_p50: float
    latency_ms_p90: float
    latency_cv: float | None
    gen_ms_per_token: float | None = None  # all of a generation over its new tokens: the prefill included
    prefill_ms: float | None = None  # a generate() call of one new token: one forward pass over the prompt, plus
    # generate()'s own fixed setup (which on a small model is a large part of it)
    decode_ms_per_token: float | None = None  # each further token: (generation - prefill) / (new tokens - 1)


def time_inference(model: Any, batch: dict, ctx: RunContext, suite: Suite, tokenizer: Any) -> Timings:
    """The latency of `model` on the fixed latency batch and, for a generating task, its greedy generation, whole
    and split into the prefill and the per-token decode (measure.py)."""
    lat = suite.latency
    with torch.inference_mode(), ctx.autocast():
        times = time_repeated(lambda: model(**batch), ctx.device, lat.warmup, lat.repeats)
        out = Timings(percentile(times, 50), percentile(times, 90), variation(times))
        if ctx.task.generates:
            def gen(n: int):
                return lambda: model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                              pad_token_id=tokenizer.pad_token_id)

            whole = time_repeated(gen(lat.gen_new_tokens), ctx.device, 1, lat.gen_repeats)
            first = time_repeated(gen(1), ctx.device, 1, lat.gen_repeats)
            whole_ms, prefill = sum(whole) / len(whole), sum(first) / len(first)
            out.gen_ms_per_token, out.prefill_ms = whole_ms / lat.gen_new_tokens, prefill
            if lat.gen_new_tokens > 1:
                out.decode_ms_per_token = max(whole_ms - prefill, 0.0) / (lat.gen_new_tokens - 1)
    return out


def one_line(err: BaseException) -> str:
    """An exception as one line of a record or a note."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:500]


def measure_merged(model: Any, method: Any, ctx: RunContext, suite: Suite, batch: dict, tokenizer: Any,
                   record: RunRecord) -> None:
    """Merge the trained adapter into the base weights (the method's `merge`: peft's merge_and_unload) and time
    the same inference again; `merge_max_abs_diff` is the largest change of any logit on the latency batch. Runs
    last: the model is merged in place. Methods that cannot merge say why instead."""
    why_not = method.unmergeable_reason()
    if why_not:
        record.merge_note = why_not
        return
    with torch.inference_mode(), ctx.autocast():
        before = model(**batch).logits.float()
    try:
        merged, record.merge_note = method.merge(model)
    except Exception as err:  # noqa: BLE001 - a method peft cannot merge here keeps its training results
        traceback.print_exc()
        record.merge_note = f"merge failed: {one_line(err)}"
        return
    with torch.inference_mode(), ctx.autocast():
        after = merged(**batch).logits.float()
    record.merge_max_abs_diff = float((after - before).abs().max())
    timed = time_inference(merged, batch, ctx, suite, tokenizer)
    record.latency_ms_p50_merged, record.gen_ms_per_token_merged = timed.latency_ms_p50, timed.gen_ms_per_token
    record.prefill_ms_merged, record.decode_ms_per_token_merged = timed.prefill_ms, timed.decode_ms_per_token
