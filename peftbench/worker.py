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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from . import data as data_mod
from . import distributed, models
from . import methods as registry
from .checkpoint import Checkpointing
from .context import RunContext, device_name, make_context
from .errors import PeftbenchError
from .evaluation import evaluate, latency_batch, measure_merged, one_line, time_inference
from .measure import MIB, PeakMemory, count_parameters, peak_rss_mib
from .protocol import WorkerSpec, progress_line
from .results import RunRecord, atomic_write_json
from .suite import Suite, launch_of
from .training import optimizer_name, train

_run_name = ""
_main_rank = True  # False on the other ranks of a multi-process run: only rank 0 reports and writes the record


def emit(event: str, **fields: Any) -> None:
    """One progress line for the parent; it ignores lines without the protocol's prefix."""
    if _main_rank:
        print(progress_line(event, **fields), flush=True)
    _maybe_die(fields.get("phase") or (f"step{fields['step']}" if event == "step" else None))


def _fault(what: str | None) -> bool:
    """Fault injection for the reliability tests: PEFTBENCH_FAULT=<key>:<what>."""
    return bool(what) and os.environ.get("PEFTBENCH_FAULT") == f"{_run_name}:{what}"


def _maybe_die(phase: str | None) -> None:
    """PEFTBENCH_FAULT=<key>:<phase> makes this worker SIGKILL itself when it enters that phase (<key>:step<N>:
    when training step N is done), as a segfault or the kernel's OOM killer would."""
    if _fault(phase):
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


def load_context(ctx: RunContext, ranks: distributed.Ranks | None) -> RunContext:
    """Where the model loads: on the run's device, except under FSDP and ZeRO-3 on GPUs, where every rank loads it
    into CPU memory and `fully_shard` (DeepSpeed's partitioning) moves only its shard to the GPU (a whole 7B model
    per GPU first would defeat it)."""
    if ranks is not None and ranks.shards_parameters and ctx.device.type == "cuda":
        return replace(ctx, device=torch.device("cpu"))
    return ctx


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
    path = models.model_path(suite.model, suite_dir)  # builds a built-in model: before joining the ranks, as
    # transformers' save_pretrained writes nothing on a rank other than 0 once a process group exists
    launch = launch_of(spec.run)
    ranks = distributed.setup(launch.processes, launch.strategy, cpu=os.environ.get("ACCELERATE_USE_CPU") == "1")
    record.world_size, record.strategy = launch.processes, launch.strategy if ranks else ""
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
            model = models.load_prepared(suite, method, settings, load_context(ctx, ranks), path, tokenizer)
            record.trainable_params, record.total_params = count_parameters(model)  # before sharding
            record.optimizer = optimizer_name([p for p in model.parameters() if p.requires_grad])
            trained = distributed.wrap(model, ranks, synchronise=not _fault("nosync"))
            ctx.sharded = ranks is not None and ranks.shards_parameters
        record.trainable_pct = 100.0 * record.trainable_params / record.total_params

        emit("phase", phase="base-eval")
        mem.exclude_begin()
        record.base = evaluate(model, ctx, suite, eval_data, tokenizer).scores
        distributed.reshard(model)  # FSDP: the parameters the optimizer is built over are the shards again
        mem.exclude_end()

        emit("phase", phase="train", steps=steps)
        checkpoint = Checkpointing(Path(spec.checkpoint_path), suite.runner.checkpoint_every) \
            if spec.checkpoint_path and suite.runner.checkpoint_every else None
        on_step = lambda step, total, loss: emit("step", step=step, steps=total, loss=loss)  # noqa: E731
        if settings.trainer == "trl":  # TRL's SFTTrainer around the same model and rows (suite: one process)
            from . import trl_loop

            record.trainer, record.optimizer = trl_loop.version(), "torch AdamW (transformers adamw_torch)"
            losses, timed_s, timed_tokens, timed_steps = trl_loop.train(
                trained, ctx, suite.training, train_enc, lr, steps, mem, tokenizer, on_step)
        else:
            losses, timed_s, timed_tokens, timed_steps = train(
                trained, ctx, suite.training, train_enc, lr, steps, mem, method, ranks, on_step, checkpoint)
        mem.stop()
    finally:
        mem.close()
    record.train_steps = steps
    if checkpoint is not None:
        record.resumed_from_step = checkpoint.resumed_from
        record.checkpoints_saved, record.checkpoint_s = checkpoint.saved, checkpoint.saved_s
        if checkpoint.resumed_from is not None:
            record.peak_mem_kind += f"; resumed at step {checkpoint.resumed_from}: the restarted process's peak"
    if ranks is None:
        record.peak_mem_mib = mem.peak_bytes / MIB if mem.peak_bytes is not None else None
        record.peak_reserved_mib = mem.reserved_bytes / MIB if mem.reserved_bytes is not None else None
        if timed_s is not None and timed_steps > 0:
            record.train_s = timed_s
            record.train_tokens_per_s = timed_tokens / timed_s
    else:
        losses = across_ranks(record, ranks, model, mem, losses, timed_s if timed_steps > 0 else None, timed_tokens)
    record.train_loss_first, record.train_loss_last = losses[0], losses[-1]
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training loss became {losses[-1]} (not finite)")

    emit("phase", phase="eval")
    final = evaluate(model, ctx, suite, eval_data, tokenizer)  # every rank (FSDP's forward needs them all)
    record.eval, record.eval_per_row = final.scores, final.per_row
    if ranks is not None:
        record.merge_note = MULTI_NOTE
        record.peak_rss_mib = max(distributed.gather(peak_rss_mib(), ranks))
        record.status = "ok"
        record.wall_s = time.perf_counter() - started
        return record

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


MULTI_NOTE = ("multi-process run: latency, adapter size and merging are measured by one-process runs (they do not "
              "depend on how training was spread)")


def across_ranks(record: RunRecord, ranks: distributed.Ranks, model: Any, mem: PeakMemory, losses: list[float],
                 timed_s: float | None, timed_tokens: int) -> list[float]:
    """Fill the record's figures of a multi-process run from every rank's (docs/distributed.md) and return the
    per-step losses averaged over the ranks (each rank's loss is that of its share of the global batch). The
    ranks' weight fingerprints must be equal: ranks that trained apart fail the run."""
    mine = {"peak": mem.peak_bytes, "reserved": mem.reserved_bytes, "timed_s": timed_s, "tokens": timed_tokens,
            "losses": losses, "fingerprint": distributed.fingerprint(model)}
    every = distributed.gather(mine, ranks)
    if all(r["peak"] is not None for r in every):
        record.peak_mem_mib_ranks = [r["peak"] / MIB for r in every]
        record.peak_mem_mib = max(record.peak_mem_mib_ranks)
    if all(r["reserved"] is not None for r in every):
        record.peak_reserved_mib = max(r["reserved"] for r in every) / MIB
    if all(r["timed_s"] for r in every):
        record.train_s = max(r["timed_s"] for r in every)  # the slowest rank: the others wait for it at each step
        record.train_tokens_per_s = sum(r["tokens"] for r in every) / record.train_s
        record.train_tokens_per_s_per_process = record.train_tokens_per_s / ranks.world
    record.ranks_in_sync = all(r["fingerprint"] == every[0]["fingerprint"] for r in every)
    if not record.ranks_in_sync:
        apart = [i for i, r in enumerate(every) if r["fingerprint"] != every[0]["fingerprint"]]
        raise RuntimeError(f"ranks {', '.join(map(str, apart))} finished with weights that differ from rank 0's: the "
                           "processes did not train one model (their gradients were not averaged)")
    return [math.fsum(step) / ranks.world for step in zip(*(r["losses"] for r in every), strict=True)]


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = (argv or sys.argv[1:])[:2]
    spec = WorkerSpec.read(Path(spec_path))
    global _run_name, _main_rank
    _run_name = spec.run.key  # with seeds, <run>@s<seed>: one seed can be made to fail
    _main_rank = int(os.environ.get("RANK", "0")) == 0
    distributed.die_with_launcher()
    record = new_record(spec)
    try:
        run(spec, record)
    except Exception as err:  # noqa: BLE001 - every failure becomes a recorded result, never a lost suite
        traceback.print_exc()
        record.status = "oom" if _is_oom(err) else "failed"
        record.error = one_line(err)
        record.peak_rss_mib = peak_rss_mib()
    if _main_rank:
        atomic_write_json(Path(result_path), asdict(record))
    emit("done", status=record.status)
    distributed.close()
    # another rank that failed alone exits non-zero: the launcher then stops every rank (rank 0 would wait in its
    # next collective until the timeout), and the runner records the failure with the log's last line
    return 0 if _main_rank or record.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
