"""The process entry of one method run: load -> apply the method -> evaluate (base) -> train -> evaluate -> time ->
save -> merge, then write the record.

Started by the runner as `python -m peftbench.worker SPEC.json RESULT.json`, one process per run, so a crash,
an out-of-memory or a leak in one method cannot touch the others. It writes exactly one RunRecord (atomically)
and reports progress as protocol lines on stdout (peftbench/protocol.py). What it calls lives in its own modules
(context, models, training, evaluation, measure); nothing imports this one but the tests. Imports torch.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from . import data as data_mod
from . import methods as registry
from . import models
from .context import RunContext, device_name, make_context
from .errors import PeftbenchError
from .evaluation import evaluate, latency_batch, measure_merged, one_line, time_inference
from .measure import MIB, PeakMemory, count_parameters, peak_rss_mib
from .protocol import WorkerSpec, progress_line
from .results import RunRecord, atomic_write_json
from .suite import Suite
from .training import optimizer_name, train

_run_name = ""


def emit(event: str, **fields: Any) -> None:
    """One progress line for the parent; it ignores lines without the protocol's prefix."""
    print(progress_line(event, **fields), flush=True)
    _maybe_die(fields.get("phase"))


def _maybe_die(phase: str | None) -> None:
    """Fault injection for the reliability tests: PEFTBENCH_FAULT=<key>:<phase> makes this worker SIGKILL itself
    when it enters that phase, as a segfault or the kernel's OOM killer would."""
    fault = os.environ.get("PEFTBENCH_FAULT")
    if fault and phase and fault == f"{_run_name}:{phase}":
        os.kill(os.getpid(), 9)


def predicted_peak_mib(spec: WorkerSpec, ctx: RunContext) -> float | None:
    """The memory model's prediction for this run, or None for an architecture it does not cover."""
    from .errors import PeftbenchError
    from .estimate import estimate_run

    try:
        return estimate_run(spec.suite_dict(), spec.run.method, spec.run.settings, device=ctx.device.type).peak_mib
    except PeftbenchError as err:
        print(f"no memory estimate: {err}", file=sys.stderr)
        return None


def fitted(ctx: RunContext, rows: data_mod.Rows, tokenizer: Any, max_len: int) -> tuple[list[dict], list[dict]]:
    """The training and evaluation rows that fit in max_length tokens (the task decides: a causal LM needs room
    for its target); the ones left out are counted in a note, and a split left empty is one line."""
    kept = []
    for split, part in (("training", rows.train), ("evaluation", rows.eval)):
        fit = ctx.task.fit(part, tokenizer, max_len)
        if len(fit) < len(part):
            rows.notes.append(f"{len(part) - len(fit)} of {len(part)} {split} rows left out: their prompt leaves no "
                              f"room for the target within training.max_length {max_len} tokens")
        if not fit:
            raise PeftbenchError(f"no {split} row fits in training.max_length {max_len} tokens: every prompt leaves "
                                 "no room for its target; raise max_length")
        kept.append(fit)
    return kept[0], kept[1]


def planned_steps(suite: Suite, n_train: int) -> int:
    t = suite.training
    return t.steps if t.steps is not None else max(1, math.ceil(t.epochs * n_train / t.batch_size))


def new_record(spec: WorkerSpec) -> RunRecord:
    return RunRecord(run=spec.run.name, method=spec.run.method, settings=spec.run.settings)


def run(spec: WorkerSpec, record: RunRecord) -> RunRecord:
    """Fill `record` in place (so a failure part-way keeps what was measured) and return it."""
    models.quiet_libraries()  # before transformers, peft and bitsandbytes are first imported (in what run calls)
    started = time.perf_counter()
    suite = spec.suite
    method = registry.get(spec.run.method)
    settings = method.Settings.model_validate(spec.run.settings)
    lr = method.learning_rate(settings, suite.training.learning_rate)
    record.seed, record.learning_rate, record.precision = suite.training.seed, lr, suite.training.precision
    from transformers import set_seed

    set_seed(suite.training.seed)
    emit("phase", phase="data")
    suite_dir = Path(spec.suite_dir) if spec.suite_dir else None
    rows = data_mod.load_rows(suite.dataset, suite.model.task, suite_dir, suite.model.num_labels,
                              suite.model.label_names)
    suite.model.num_labels, suite.model.label_names = rows.num_labels, rows.label_names  # as the runner resolved them
    path = models.model_path(suite.model, suite_dir)
    tokenizer = models.load_tokenizer(suite.model, path)
    ctx = make_context(suite, path)
    ctx.gradient_checkpointing = method.gradient_checkpointing(settings, suite.training.gradient_checkpointing)
    record.device = device_name(ctx.device)
    record.est_peak_mib = predicted_peak_mib(spec, ctx)
    max_len = suite.training.max_length
    train_rows, eval_rows = fitted(ctx, rows, tokenizer, max_len)
    record.train_rows, record.eval_rows = len(train_rows), len(eval_rows)
    record.rows_dropped = len(rows.train) + len(rows.eval) - len(train_rows) - len(eval_rows)
    record.data_note = "; ".join(rows.notes)
    train_enc = ctx.task.encode(train_rows, tokenizer, max_len)
    eval_data = ctx.task.eval_data(eval_rows, tokenizer, max_len)
    steps = planned_steps(suite, len(train_rows))
    ctx.total_steps = steps

    emit("phase", phase="load")
    mem = PeakMemory(ctx.device)
    record.peak_mem_kind = mem.kind
    gc.collect()  # garbage freed inside the window would otherwise lower the measured peak
    mem.start()
    try:  # a failure inside the window must not leave the CPU profiler running (it crashes the process at exit)
        with mem.window("load"):
            model = models.load_prepared(suite, method, settings, ctx, path, tokenizer)
        record.trainable_params, record.total_params = count_parameters(model)
        record.trainable_pct = 100.0 * record.trainable_params / record.total_params
        record.optimizer = optimizer_name([p for p in model.parameters() if p.requires_grad])

        emit("phase", phase="base-eval")
        mem.exclude_begin()
        record.base = evaluate(model, ctx, suite, eval_data, tokenizer).scores
        mem.exclude_end()

        emit("phase", phase="train", steps=steps)
        losses, timed_s, timed_tokens, timed_steps = train(
            model, ctx, suite.training, train_enc, lr, steps, mem, method,
            on_step=lambda step, total, loss: emit("step", step=step, steps=total, loss=loss))
        mem.stop()
    finally:
        mem.close()
    record.peak_mem_mib = mem.peak_bytes / MIB if mem.peak_bytes is not None else None
    record.peak_reserved_mib = mem.reserved_bytes / MIB if mem.reserved_bytes is not None else None
    record.train_steps = steps
    record.train_loss_first, record.train_loss_last = losses[0], losses[-1]
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training loss became {losses[-1]} (not finite)")
    if timed_s is not None and timed_steps > 0:
        record.train_s = timed_s
        record.train_tokens_per_s = timed_tokens / timed_s

    emit("phase", phase="eval")
    final = evaluate(model, ctx, suite, eval_data, tokenizer)
    record.eval, record.eval_per_row = final.scores, final.per_row

    emit("phase", phase="latency")
    batch = latency_batch(tokenizer, eval_rows, suite, ctx)
    timed = time_inference(model, batch, ctx, suite, tokenizer)
    record.latency_ms_p50, record.latency_ms_p90, record.latency_cv = (timed.latency_ms_p50, timed.latency_ms_p90,
                                                                       timed.latency_cv)
    record.gen_ms_per_token, record.prefill_ms, record.decode_ms_per_token = (timed.gen_ms_per_token,
                                                                              timed.prefill_ms,
                                                                              timed.decode_ms_per_token)

    emit("phase", phase="save")
    with tempfile.TemporaryDirectory() as tmp:
        record.adapter_size_mb, record.adapter_size_kind = method.save(model, Path(spec.adapter_dir or tmp))
    if spec.adapter_dir and suite.model.label_names:  # the class names travel with the adapter (peftbench merge)
        atomic_write_json(Path(spec.adapter_dir) / "label_names.json", suite.model.label_names)

    emit("phase", phase="merge")
    measure_merged(model, method, ctx, suite, batch, tokenizer, record)
    record.peak_rss_mib = peak_rss_mib()
    record.status = "ok"
    record.wall_s = time.perf_counter() - started
    return record


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = (argv or sys.argv[1:])[:2]
    spec = WorkerSpec.read(Path(spec_path))
    global _run_name
    _run_name = spec.run.key  # with seeds, <run>@s<seed>: one seed can be made to fail
    record = new_record(spec)
    try:
        run(spec, record)
    except Exception as err:  # noqa: BLE001 - every failure becomes a recorded result, never a lost suite
        traceback.print_exc()
        record.status = "oom" if _is_oom(err) else "failed"
        record.error = one_line(err)
        record.peak_rss_mib = peak_rss_mib()
    atomic_write_json(Path(result_path), asdict(record))
    emit("done", status=record.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
