"""Child side of a method run: load -> apply method -> evaluate (base) -> train -> evaluate -> time -> save.

Started by the runner as `python -m peftbench.worker SPEC.json RESULT.json`, one process per run, so a crash,
an out-of-memory or a leak in one method cannot touch the others. It writes exactly one RunRecord (atomically)
and reports progress as `@@peftbench {json}` lines on stdout. Imports torch, transformers and peft.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def emit(event: str, **fields: Any) -> None:
    """One progress line for the parent; it ignores lines without the prefix."""
    print(PROGRESS_PREFIX + json.dumps({"event": event, **fields}), flush=True)
    _maybe_die(fields.get("phase"))


_run_name = ""


def _maybe_die(phase: str | None) -> None:
    """Fault injection for the reliability tests: PEFTBENCH_FAULT=<run>:<phase> makes this worker SIGKILL itself
    when it enters that phase, as a segfault or the kernel's OOM killer would."""
    fault = os.environ.get("PEFTBENCH_FAULT")
    if fault and phase and fault == f"{_run_name}:{phase}":
        os.kill(os.getpid(), 9)


from .models import quiet_libraries  # noqa: E402 - must run before the imports below

quiet_libraries()

import torch  # noqa: E402

from . import data as data_mod  # noqa: E402
from . import methods as registry  # noqa: E402
from . import metrics, models  # noqa: E402
from .measure import (  # noqa: E402
    MIB,
    PeakMemory,
    count_parameters,
    directory_size_mb,
    own_cpu_storage,
    peak_rss_mib,
    percentile,
    synchronize,
    tensor_bytes_mb,
    time_repeated,
)
from .results import PROGRESS_PREFIX, RunRecord, atomic_write_json  # noqa: E402
from .suite import Suite  # noqa: E402

PEFT_TASK = {"classification": "SEQ_CLS", "causal_lm": "CAUSAL_LM"}


@dataclass
class WorkerContext:
    """What a method needs to know about the run it is applied in."""

    task: str
    peft_task_type: str
    device: torch.device
    precision: str
    load_dtype: torch.dtype  # dtype of the loaded (non-quantized) weights
    compute_dtype: torch.dtype  # bitsandbytes compute dtype / autocast dtype
    gradient_checkpointing: bool
    tokenizer_path: str
    total_steps: int = 1  # optimizer steps the run will take (AdaLoRA's rank schedule needs it)

    def autocast(self):
        if self.precision.endswith("-mixed"):
            return torch.autocast(self.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return torch.device("cpu")


def make_context(suite: Suite, tokenizer_path: str) -> WorkerContext:
    t = suite.training
    device = resolve_device(t.device)
    compute = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16}.get(t.precision, torch.float16)
    return WorkerContext(
        task=suite.model.task,
        peft_task_type=PEFT_TASK[suite.model.task],
        device=device,
        precision=t.precision,
        load_dtype=torch.bfloat16 if t.precision == "bf16" else torch.float32,
        compute_dtype=compute,
        gradient_checkpointing=t.gradient_checkpointing,
        tokenizer_path=tokenizer_path,
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index} {torch.cuda.get_device_name(device)}"
    import platform

    return f"cpu {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _slices(enc: dict, size: int):
    n = len(next(iter(enc.values())))
    for i in range(0, n, size):
        yield {k: v[i : i + size] for k, v in enc.items()}


@torch.inference_mode()
def evaluate(model, ctx: WorkerContext, suite: Suite, eval_enc: dict, prompts: dict | None, refs: list[str] | None,
             tokenizer) -> dict[str, float]:
    """Task metrics on the evaluation rows. Keys: loss, accuracy, f1 | loss, perplexity, exact_match."""
    model.eval()
    bs = suite.evaluation.batch_size
    loss_sum, weight = 0.0, 0
    preds, labels = [], []
    for batch in _slices(eval_enc, bs):
        batch = _to(batch, ctx.device)
        with ctx.autocast():
            out = model(**batch)
        if ctx.task == "classification":
            n = len(batch["labels"])
            preds += out.logits.float().argmax(-1).tolist()
            labels += batch["labels"].tolist()
        else:  # the model's loss is a mean over predicted (shifted, unmasked) tokens
            n = int((batch["labels"][:, 1:] != -100).sum())
        loss_sum += float(out.loss) * n
        weight += n
    result = {"loss": loss_sum / max(weight, 1)}
    if ctx.task == "classification":
        result["accuracy"] = metrics.accuracy(preds, labels)
        result["f1"] = metrics.macro_f1(preds, labels)
    else:
        result["perplexity"] = metrics.perplexity(result["loss"])
        generated = []
        for batch in _slices(prompts, bs):
            batch = _to(batch, ctx.device)
            with ctx.autocast():
                out = model.generate(**batch, max_new_tokens=suite.evaluation.max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            generated += [" ".join(t.split()) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        result["exact_match"] = metrics.exact_match(generated, refs)
    return result


def latency_batch(tokenizer, rows: list[dict], suite: Suite, ctx: WorkerContext) -> dict:
    """A fixed batch of real evaluation text, cut or cycled to exactly seq_len tokens per row."""
    lat = suite.latency
    text = " ".join(r.get("text") or (r["prompt"] + " " + r["target"]) for r in rows[:64])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.pad_token_id]
    need = lat.batch_size * lat.seq_len
    ids = (ids * (need // len(ids) + 1))[:need]
    input_ids = torch.tensor(ids).view(lat.batch_size, lat.seq_len)
    return _to({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, ctx.device)


def train(model, ctx: WorkerContext, suite: Suite, train_enc: dict, lr: float, steps: int, mem: PeakMemory,
          method=None):
    """The training loop. Returns (losses, timed_seconds, timed_tokens, timed_steps).

    Timing excludes the first `warmup_timing_steps` steps and, on CPU, the steps inside the profiler window.
    """
    t = suite.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=t.weight_decay)
    from transformers import get_scheduler

    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=t.warmup_steps)
    scaler = torch.amp.GradScaler(ctx.device.type) if t.precision == "fp16-mixed" else None
    n = len(train_enc["input_ids"])
    gen = torch.Generator().manual_seed(t.seed)
    order: list[int] = []
    profiled = t.memory_profile_steps if mem.profiling else 0
    untimed = max(t.warmup_timing_steps, profiled)
    losses: list[float] = []
    timed_tokens, t0 = 0, None
    model.train()
    for step in range(1, steps + 1):
        if len(order) < t.batch_size:  # reshuffle once per pass over the data
            order += torch.randperm(n, generator=gen).tolist()
        idx, order = order[: t.batch_size], order[t.batch_size:]
        batch = _to({k: v[idx] for k, v in train_enc.items()}, ctx.device)
        window = mem.window("train") if step <= profiled else contextlib.nullcontext()
        with window:
            with ctx.autocast():
                loss = model(**batch).loss
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if t.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if method is not None:
                method.after_optimizer_step(model, step)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if step == profiled:
            mem.stop()  # CPU: close the profiler window; training goes on unprofiled
        if step == untimed:
            synchronize(ctx.device)
            t0 = time.perf_counter()
        elif step > untimed:
            timed_tokens += int(batch["attention_mask"].sum())
        emit("step", step=step, steps=steps, loss=losses[-1])
    synchronize(ctx.device)
    timed_s = time.perf_counter() - t0 if t0 is not None else None
    return losses, timed_s, timed_tokens, steps - untimed


def time_inference(model, batch: dict, ctx: WorkerContext, suite: Suite, tokenizer):
    """(latency p50 ms, p90 ms, generation ms/token or None) of `model` on the fixed latency batch (measure.py)."""
    lat = suite.latency
    gen_ms = None
    with torch.inference_mode(), ctx.autocast():
        times = time_repeated(lambda: model(**batch), ctx.device, lat.warmup, lat.repeats)
        if ctx.task == "causal_lm":
            gen = lambda: model.generate(**batch, max_new_tokens=lat.gen_new_tokens, min_new_tokens=lat.gen_new_tokens,  # noqa: E731
                                         do_sample=False, pad_token_id=tokenizer.pad_token_id)
            gen_times = time_repeated(gen, ctx.device, 1, lat.gen_repeats)
            gen_ms = sum(gen_times) / len(gen_times) / lat.gen_new_tokens
    return percentile(times, 50), percentile(times, 90), gen_ms


def measure_merged(model, method, ctx: WorkerContext, suite: Suite, batch: dict, tokenizer, record: RunRecord) -> None:
    """Merge the trained adapter into the base weights (peft's merge_and_unload) and time the same inference again;
    `merge_max_abs_diff` is the largest change of any logit on the latency batch. Runs last: the model is merged
    in place. Methods that cannot merge say why instead."""
    if method.name == "full":
        record.merge_note = "full fine-tuning: the trained model itself, nothing to merge"
        return
    if not method.traits.mergeable:
        record.merge_note = f"{method.name}: not mergeable; {method.traits.extra_positions or 'extra modules'} at inference"
        return
    with torch.inference_mode(), ctx.autocast():
        before = model(**batch).logits.float()
    try:
        merged = model.merge_and_unload()
    except Exception as err:  # noqa: BLE001 - a method peft cannot merge here keeps its training results
        traceback.print_exc()
        record.merge_note = f"merge failed: {_one_line(err)}"
        return
    with torch.inference_mode(), ctx.autocast():
        after = merged(**batch).logits.float()
    record.merge_max_abs_diff = float((after - before).abs().max())
    record.latency_ms_p50_merged, _, record.gen_ms_per_token_merged = time_inference(merged, batch, ctx, suite, tokenizer)
    if method.traits.quantized_base:
        record.merge_note = "merged into the quantized base weights: re-quantization changes the outputs"


def load_prepared(suite: Suite, method, settings, ctx: WorkerContext, path: str, tokenizer):
    """The base model loaded as the method needs it, with the method applied: what gets trained."""
    model = models.load_model(suite.model, path, tokenizer, ctx.load_dtype, ctx.device, method.load_kwargs(settings, ctx))
    if ctx.device.type == "cpu":
        own_cpu_storage(model)
    if ctx.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return method.prepare(model, settings, ctx)


def predicted_peak_mib(spec: dict[str, Any], ctx: WorkerContext) -> float | None:
    """The memory model's prediction for this run, or None for an architecture it does not cover."""
    from .errors import PeftbenchError
    from .estimate import estimate_run

    plan = spec["run"]
    try:
        return estimate_run(spec["suite"], plan["method"], plan["settings"], device=ctx.device.type).peak_mib
    except PeftbenchError as err:
        print(f"no memory estimate: {err}", file=sys.stderr)
        return None


def planned_steps(suite: Suite, n_train: int) -> int:
    t = suite.training
    return t.steps if t.steps is not None else max(1, math.ceil(t.epochs * n_train / t.batch_size))


def new_record(spec: dict[str, Any]) -> RunRecord:
    plan = spec["run"]
    return RunRecord(method=plan["name"], method_type=plan["method"], settings=plan["settings"])


def run(spec: dict[str, Any], record: RunRecord) -> RunRecord:
    """Fill `record` in place (so a failure part-way keeps what was measured) and return it."""
    started = time.perf_counter()
    suite = Suite.model_validate(spec["suite"])
    plan = spec["run"]
    method = registry.get(plan["method"])
    settings = method.Settings.model_validate(plan["settings"])
    lr = method.learning_rate(settings, suite.training.learning_rate)
    record.seed, record.learning_rate, record.precision = suite.training.seed, lr, suite.training.precision
    from transformers import set_seed

    set_seed(suite.training.seed)
    emit("phase", phase="data")
    suite_dir = Path(spec["suite_dir"]) if spec.get("suite_dir") else None
    train_rows, eval_rows = data_mod.load_rows(suite.dataset, suite.model.task, suite_dir)
    path = models.model_path(suite.model)
    tokenizer = models.load_tokenizer(suite.model, path)
    ctx = make_context(suite, path)
    ctx.gradient_checkpointing = method.gradient_checkpointing(settings, suite.training.gradient_checkpointing)
    record.device = device_name(ctx.device)
    record.est_peak_mib = predicted_peak_mib(spec, ctx)
    max_len = suite.training.max_length
    if ctx.task == "classification":
        train_enc = data_mod.encode_classification(train_rows, tokenizer, max_len)
        eval_enc = data_mod.encode_classification(eval_rows, tokenizer, max_len)
        prompts = refs = None
    else:
        train_enc = data_mod.encode_causal(train_rows, tokenizer, max_len)
        eval_enc = data_mod.encode_causal(eval_rows, tokenizer, max_len)
        prompts = data_mod.encode_prompts(eval_rows, tokenizer, max_len)
        refs = [data_mod.reference_text(tokenizer, r["target"]) for r in eval_rows]
    steps = planned_steps(suite, len(train_rows))
    ctx.total_steps = steps

    emit("phase", phase="load")
    mem = PeakMemory(ctx.device)
    record.peak_mem_kind = mem.kind
    gc.collect()  # garbage freed inside the window would otherwise lower the measured peak
    mem.start()
    try:  # a failure inside the window must not leave the CPU profiler running (it crashes the process at exit)
        with mem.window("load"):
            model = load_prepared(suite, method, settings, ctx, path, tokenizer)
        record.trainable_params, record.total_params = count_parameters(model)
        record.trainable_pct = 100.0 * record.trainable_params / record.total_params

        emit("phase", phase="base-eval")
        mem.exclude_begin()
        base = evaluate(model, ctx, suite, eval_enc, prompts, refs, tokenizer)
        mem.exclude_end()
        for k, v in base.items():
            setattr(record, f"base_{k}", v)

        emit("phase", phase="train", steps=steps)
        losses, timed_s, timed_tokens, timed_steps = train(model, ctx, suite, train_enc, lr, steps, mem, method)
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
    final = evaluate(model, ctx, suite, eval_enc, prompts, refs, tokenizer)
    for k, v in final.items():
        setattr(record, f"eval_{k}", v)

    emit("phase", phase="latency")
    batch = latency_batch(tokenizer, eval_rows, suite, ctx)
    timed = time_inference(model, batch, ctx, suite, tokenizer)
    record.latency_ms_p50, record.latency_ms_p90, record.gen_ms_per_token = timed

    emit("phase", phase="save")
    if method.name == "full":
        record.adapter_size_mb, record.adapter_size_kind = tensor_bytes_mb(model), "model tensors (computed)"
    else:
        keep = spec.get("adapter_dir")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(keep) if keep else Path(tmp)
            model.save_pretrained(out)
            record.adapter_size_mb, record.adapter_size_kind = directory_size_mb(out), "save_pretrained files"

    emit("phase", phase="merge")
    measure_merged(model, method, ctx, suite, batch, tokenizer, record)
    record.peak_rss_mib = peak_rss_mib()
    record.status = "ok"
    record.wall_s = time.perf_counter() - started
    return record


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:500]


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = (argv or sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    global _run_name
    _run_name = spec["run"]["name"]
    record = new_record(spec)
    try:
        run(spec, record)
    except Exception as err:  # noqa: BLE001 - every failure becomes a recorded result, never a lost suite
        traceback.print_exc()
        record.status = "oom" if _is_oom(err) else "failed"
        record.error = _one_line(err)
        record.peak_rss_mib = peak_rss_mib()
    from dataclasses import asdict

    atomic_write_json(Path(result_path), asdict(record))
    emit("done", status=record.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
