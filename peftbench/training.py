"""The training loop the worker runs for every method: the same optimizer, schedule, clipping and data order.

Worker side (imports torch). Written out rather than `transformers.Trainer` because the measurements own the step
boundaries: the untimed warm-up steps, the CPU profiler window, the synchronisation before the clock reads, and no
evaluation inside the timed steps (benchmarks/overhead.py checks it costs no more than a minimal loop).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from .checkpoint import Checkpointing, capture, restore
from .context import RunContext
from .distributed import Ranks, deepspeed_engine, local_batch
from .measure import PeakMemory, synchronize
from .suite import TrainingConfig

KAHAN = "optimi AdamW, Kahan summation"  # the record's name for each optimizer (RunRecord.optimizer)
PLAIN = "torch AdamW"


def optimizer_name(params: list) -> str:
    """Which AdamW a run with these trainable parameters gets (see make_optimizer): Kahan summation when most
    trainable elements are 16-bit (the method trains the base's own weights), as the memory model assumes
    (estimate.py: the trainable parameters' dtype); a small 16-bit copy beside fp32 adapters (a classifier head in a
    bf16 run) keeps torch's AdamW, as before."""
    total = sum(p.numel() for p in params)
    low = sum(p.numel() for p in params if p.dtype in (torch.bfloat16, torch.float16))
    return KAHAN if total and 2 * low > total else PLAIN


def make_optimizer(params: list, lr: float, weight_decay: float):
    """AdamW with torch's defaults (betas 0.9/0.999, eps 1e-8, decoupled weight decay) for every method.

    Trainable parameters held in 16 bits (full fine-tuning and BitFit-like methods under `precision: bf16`) get
    torch-optimi's AdamW with Kahan summation instead: torch's AdamW adds each update to the 16-bit weight, where an
    update below half a unit in the last place rounds away (at lr 1e-5 most bf16 weights never change: the "stale
    weights" of pure-bf16 training). Kahan summation keeps the lost low bits in a 16-bit compensation buffer per
    parameter (2 bytes/param more) and adds them back at the next step. Replayed on CPU through this loop (tiny
    Llama, 10 steps at lr 1e-5): 15% of the weights changed with torch's AdamW, 72% with Kahan summation, and the
    update's cosine similarity with the fp32 run's went from 0.37 to 0.90 (tests/integration/test_training.py).
    For fp32 parameters optimi's AdamW is the same AdamW; torch's is kept there so earlier results stay comparable.
    optimi picks its fused Triton kernel on CUDA when Triton is installed (torch's Linux CUDA wheels bring it: no
    step temporaries), else its per-tensor loop (one temporary of the largest tensor); with `foreach` left unset it
    never takes the foreach path (a temporary as large as all states). Passing foreach=False would also turn the
    Triton kernel off (optimi picks Triton only when both are unset).
    """
    if optimizer_name(params) == PLAIN:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    import optimi

    return optimi.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8, kahan_sum=True)


def train(model: Any, ctx: RunContext, t: TrainingConfig, train_enc: dict, lr: float, steps: int, mem: PeakMemory,
          method: Any = None, ranks: Ranks | None = None,
          on_step: Callable[[int, int, float], None] = lambda step, steps, loss: None,
          checkpoint: Checkpointing | None = None):
    """Train for `steps` optimizer steps. Returns (losses, timed_seconds, timed_tokens, timed_steps), this
    process's own.

    Timing excludes the first `warmup_timing_steps` steps and, on CPU, the steps inside the profiler window. In a
    multi-process run (`ranks`; `model` wrapped by distributed.wrap) every step takes batch_size rows per process
    from the same data order, each rank its own share, so each process sees batch_size rows per step as a
    one-process run does.

    With `checkpoint` (runner.checkpoint_every: checkpoint.py) the state is saved every N steps, and a run whose
    file exists continues after the step it was saved at: the losses are the whole run's, while the timed and
    profiled steps are counted from the restart (a restarted process warms up again), and the seconds spent
    writing checkpoints are left out of the timed seconds.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, lr, t.weight_decay)
    from transformers import get_scheduler

    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=t.warmup_steps)
    engine = None  # DeepSpeed ZeRO: its engine runs backward and step (averaging, clipping, schedule, zero_grad)
    if ranks is not None and ranks.deepspeed:
        with mem.window("train"):  # its flat gradient and optimizer partitions are the run's memory
            engine, optimizer, scheduler = deepspeed_engine(model, optimizer, scheduler, t.batch_size,
                                                            t.max_grad_norm, ranks)
        model = engine
    scaler = torch.amp.GradScaler(ctx.device.type) if t.precision == "fp16-mixed" else None
    n = len(train_enc["input_ids"])
    gen = torch.Generator().manual_seed(t.seed)
    order: list[int] = []
    losses: list[float] = []
    start = 0  # the step training continues after (a resumed run: the checkpoint's)
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        start, order, losses = restore(saved, model, optimizer, scheduler, scaler, gen)
        checkpoint.resumed_from = start
        del saved
    profiled = start + t.memory_profile_steps if mem.profiling else 0
    untimed = start + max(t.warmup_timing_steps, t.memory_profile_steps if mem.profiling else 0)
    timed_tokens, t0, paused = 0, None, 0.0  # paused: seconds of checkpoint writing inside the timed steps
    model.train()
    rows = t.batch_size * (ranks.world if ranks else 1)  # the global batch of a step
    if untimed == start:  # no untimed step (warmup_timing_steps 0, no profiler window): the clock starts now
        synchronize(ctx.device)
        t0 = time.perf_counter()
    for step in range(start + 1, steps + 1):
        while len(order) < rows:  # reshuffle once per pass over the data
            order += torch.randperm(n, generator=gen).tolist()
        idx, order = local_batch(order[:rows], ranks), order[rows:]
        batch = ctx.to_device({k: v[idx] for k, v in train_enc.items()})
        window = mem.window("train") if step <= profiled else contextlib.nullcontext()
        with window:
            with ctx.autocast():
                loss = model(**batch).loss
            if engine is not None:
                engine.backward(loss)
                engine.step()
            elif scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if engine is None:
                if t.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if method is not None:  # DDP: the model it wraps (AdaLoRA is refused under ZeRO: launch.refusal)
                    method.after_optimizer_step(getattr(model, "module", model), step)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step == profiled:
            mem.stop()  # CPU: close the profiler window; training goes on unprofiled
        if step == untimed:
            synchronize(ctx.device)
            t0 = time.perf_counter()
        elif step > untimed:
            timed_tokens += int(batch["attention_mask"].sum())
        on_step(step, steps, losses[-1])
        if checkpoint is not None and checkpoint.due(step, steps):
            before = checkpoint.saved_s
            checkpoint.save(capture(step, model, optimizer, scheduler, scaler, gen, order, losses))
            if t0 is not None:
                paused += checkpoint.saved_s - before
    synchronize(ctx.device)
    timed_s = time.perf_counter() - t0 - paused if t0 is not None else None
    return losses, timed_s, timed_tokens, steps - untimed
