"""Training through TRL's SFTTrainer (`trainer: trl` in a method entry), measured as the harness's own loop is.

Worker side (imports torch, transformers, trl). The worker hands this module what it hands training.train: the
model with the method already applied (the same peft model), the same encoded rows (prompt + target + eos, the
labels masking everything but target and eos: passed as `input_ids` and `labels`, so TRL builds no masks of its
own), the same steps, batch size, learning rate, schedule (constant with warm-up), weight decay, clipping and
seed, every batch padded to max_length (pad_to_multiple_of) as the harness pads it. What stays TRL's and
transformers' own is what a user of that stack gets: the data order (transformers' seeded sampler), the optimizer
(`adamw_torch`: torch's AdamW, for 16-bit trainable weights too, where the harness uses Kahan summation),
mixed precision through accelerate, and the per-step work SFTTrainer adds (its token-accuracy and entropy
metrics). The measurements keep their definitions (docs/columns.md): the losses are each step's own (read from
`training_step`, not the 4-decimal logged ones), train_s and tokens/s cover the steps after warmup_timing_steps
and the CPU profiler window (non-padding tokens, transformers' `include_num_input_tokens_seen="non_padding"`),
and the CPU peak is read over the first memory_profile_steps steps, each opened and closed by a callback.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from .context import RunContext
from .measure import PeakMemory, synchronize
from .suite import TrainingConfig


def version() -> str:
    import trl

    return f"trl {trl.__version__} SFTTrainer"


def rows_for_trl(train_enc: dict) -> Any:
    """The encoded rows as a datasets.Dataset of unpadded input_ids and labels (TRL's collator pads them again)."""
    from datasets import Dataset

    ids, labels = [], []
    for seq, lab, mask in zip(train_enc["input_ids"], train_enc["labels"], train_enc["attention_mask"], strict=True):
        n = int(mask.sum())
        ids.append(seq[:n].tolist())
        labels.append(lab[:n].tolist())
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def train(model: Any, ctx: RunContext, t: TrainingConfig, train_enc: dict, lr: float, steps: int, mem: PeakMemory,
          tokenizer: Any, on_step=lambda step, steps, loss: None):
    """Train for `steps` optimizer steps with SFTTrainer. Returns (losses, timed_seconds, timed_tokens,
    timed_steps), as training.train does."""
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    profiled = t.memory_profile_steps if mem.profiling else 0
    untimed = max(t.warmup_timing_steps, profiled)
    losses: list[float] = []
    clock: dict[str, Any] = {"t0": None, "t1": None, "tokens0": 0, "tokens1": 0, "window": None}

    class Measure(TrainerCallback):
        """The profiler window around the first steps and the clock around the timed ones."""

        def on_train_begin(self, args, state, control, **kwargs):
            if untimed == 0:  # no untimed step: the clock starts with the first
                synchronize(ctx.device)
                clock["t0"], clock["tokens0"] = time.perf_counter(), state.num_input_tokens_seen

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step + 1 <= profiled:
                clock["window"] = mem.window("train")
                clock["window"].__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if clock["window"] is not None:
                clock["window"].__exit__(None, None, None)
                clock["window"] = None
            if step == profiled:
                mem.stop()
            if step == untimed or step == steps:
                synchronize(ctx.device)
                key = "0" if step == untimed else "1"
                clock["t" + key], clock["tokens" + key] = time.perf_counter(), state.num_input_tokens_seen
            on_step(step, steps, losses[-1])

    class Trainer(SFTTrainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            losses.append(loss.item())  # the step's own loss (gradient accumulation is 1)
            return loss

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=1,
            learning_rate=lr, lr_scheduler_type="constant_with_warmup", warmup_steps=t.warmup_steps,
            weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm or 0.0, optim="adamw_torch", seed=t.seed,
            data_seed=t.seed, bf16=t.precision == "bf16-mixed", fp16=t.precision == "fp16-mixed",
            use_cpu=ctx.device.type == "cpu", gradient_checkpointing=ctx.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False}, max_length=t.max_length,
            pad_to_multiple_of=t.max_length, packing=False, shuffle_dataset=False, logging_steps=1,
            report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
            include_num_input_tokens_seen="non_padding",
        )
        trainer = Trainer(model=model, args=config, train_dataset=rows_for_trl(train_enc), processing_class=tokenizer,
                          callbacks=[Measure()])
        trainer.train()
    if clock["window"] is not None:  # a failure inside a profiled step
        clock["window"].__exit__(None, None, None)
    timed_s = clock["t1"] - clock["t0"] if clock["t0"] is not None and clock["t1"] is not None else None
    return losses, timed_s, clock["tokens1"] - clock["tokens0"], steps - untimed
