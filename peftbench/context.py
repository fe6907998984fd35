"""What a method and a task are given at run time: the task kind, the device, the dtypes, checkpointing.

Torch is imported lazily (inside the functions), so the contract can be named without loading torch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import tasks

if TYPE_CHECKING:
    from .suite import Suite
    from .tasks.base import TaskKind


@dataclass
class RunContext:
    """What a method needs to know about the run it is applied in."""

    task: TaskKind
    device: Any  # torch.device
    precision: str  # the suite's training.precision
    load_dtype: Any  # torch.dtype of the loaded (non-quantized) weights
    compute_dtype: Any  # torch.dtype: bitsandbytes compute dtype, autocast dtype
    gradient_checkpointing: bool
    tokenizer_path: str
    total_steps: int = 1  # optimizer steps the run will take (AdaLoRA's rank schedule needs it)
    sharded: bool = False  # the model is sharded over processes (FSDP2: distributed.py)

    @property
    def peft_task_type(self) -> str:
        return self.task.peft_task_type

    def autocast(self):
        import torch

        if self.precision.endswith("-mixed"):
            return torch.autocast(self.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()

    def inference(self):
        """What evaluation runs under: torch.inference_mode, or no_grad for a sharded model (FSDP2 gathers
        parameters into buffers it reuses; gathered under inference mode they become inference tensors, and the
        next training step's in-place gather into them fails)."""
        import torch

        return torch.no_grad() if self.sharded else torch.inference_mode()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def resolve_device(requested: str):
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return torch.device("cpu")


def device_name(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # --parallel gives each worker one GPU: name which
        where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        return f"cuda:{device.index} {torch.cuda.get_device_name(device)}{where}"
    return f"cpu {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def make_context(suite: Suite, tokenizer_path: str) -> RunContext:
    import torch

    t = suite.training
    compute = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16}.get(t.precision,
                                                                                               torch.float16)
    return RunContext(
        task=tasks.get(suite.model.task),
        device=resolve_device(t.device),
        precision=t.precision,
        load_dtype=torch.bfloat16 if t.precision == "bf16" else torch.float32,
        compute_dtype=compute,
        gradient_checkpointing=t.gradient_checkpointing,
        tokenizer_path=tokenizer_path,
    )


def meta_context(task: str) -> RunContext:
    """For applying a method to a model on the meta device (exact parameter counts): fp32, no tokenizer."""
    import torch

    return RunContext(task=tasks.get(task), device=torch.device("meta"), precision="fp32", load_dtype=torch.float32,
                      compute_dtype=torch.float32, gradient_checkpointing=False, tokenizer_path="")
