"""The worker's side of a run across several processes (`--launcher accelerate`): the process group, the strategy's
wrapping, the rank's share of each batch, and the check that the ranks trained one model. Worker side (imports
torch); the parent's side (settings, the method x strategy matrix, the launch command) is peftbench/launch.py.

accelerate's `PartialState` joins the process group `accelerate launch` set up (NCCL on GPUs, gloo on a CPU; it
must be told `cpu=True` there, or under `accelerate launch --multi_gpu` on a CPU it reports one process while
torch.distributed has two: each rank would train alone, silently). The strategies are torch's own: DDP
(`DistributedDataParallel`) and FSDP2 (`fully_shard` on every transformer block, then on the root: parameters,
gradients and optimizer states sharded over the ranks, as ZeRO-3), and DeepSpeed's ZeRO stage 2 and 3 engines
around the harness's own optimizer and schedule. torch's API is called directly rather than
through `Accelerator.prepare` because the harness owns its training loop (training.py), and because accelerate's
FSDP plugin never engages on a CPU, where this is tested; `fully_shard` is what that plugin calls for FSDP2.

Every failure of this kind is silent, so every multi-process run proves it trained one model: after training each
rank computes a fingerprint of the trainable weights (float64 sum and sum of squares of every trainable tensor,
gathered whole under FSDP and ZeRO-3) and rank 0 compares them; ranks that differ fail the run (`ranks_in_sync`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Ranks:
    """This process's place in a multi-process run."""

    rank: int
    world: int
    strategy: str  # launch.Strategy: ddp, fsdp, zero2 or zero3

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def deepspeed(self) -> bool:
        return self.strategy.startswith("zero")

    @property
    def shards_parameters(self) -> bool:
        """FSDP and ZeRO-3 hold a shard of each parameter per rank (ZeRO-2 and DDP hold every parameter)."""
        return self.strategy in ("fsdp", "zero3")


def setup(processes: int, strategy: str, cpu: bool) -> Ranks | None:
    """Join the process group of a launched run (None for a one-process run). A group whose size is not the
    `processes` the run was launched with is an error: the ranks would not share their gradients."""
    if processes <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_initialized() else 1
    if state.num_processes != processes or world != processes:
        raise RuntimeError(f"launched for {processes} processes, but the process group has {world} (accelerate "
                           f"sees {state.num_processes}): the ranks would train separate models")
    return Ranks(state.process_index, processes, strategy)


def blocks(model: Any) -> list[torch.nn.Module]:
    """The modules FSDP shards one by one: those of the classes transformers keeps on one device
    (`_no_split_modules`: the decoder layers, a BERT encoder's layers and embeddings)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap(model: Any, ranks: Ranks | None, synchronise: bool = True) -> Any:
    """The module to train: `model` under the run's strategy (DDP: a wrapper around it; FSDP2: `model` itself,
    sharded in place). The evaluation keeps using `model`. `synchronise=False` (fault injection for the tests:
    PEFTBENCH_FAULT=<run>:nosync) trains each rank alone, as a launch that failed to join its ranks would."""
    if ranks is None or not synchronise:
        return model
    if ranks.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if ranks.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    if ranks.deepspeed:
        return model  # DeepSpeed wraps the model with its optimizer: deepspeed_engine, where training builds that
    raise ValueError(f"unknown strategy {ranks.strategy!r}")


def deepspeed_engine(model: Any, optimizer: Any, scheduler: Any, batch_size: int, max_grad_norm: float | None,
                     ranks: Ranks):
    """(engine, optimizer, scheduler) of DeepSpeed ZeRO stage 2 or 3 around the harness's own AdamW and schedule.

    The engine's step clips (`gradient_clipping`, the suite's max_grad_norm), steps the optimizer and the schedule
    and clears the gradients; its backward averages them over the ranks. DeepSpeed joins the process group
    accelerate made (gloo on a CPU, through its CPU accelerator: DS_ACCELERATOR=cpu, set by the runner)."""
    import deepspeed

    # The communication buckets as transformers' DeepSpeed integration fills "auto" (integrations/deepspeed.py):
    # DeepSpeed's defaults (5e8 elements, 1.9 GiB in fp32) would be most of a small run's peak (measured on the tiny
    # Llama under ZeRO-3: 1,962 MiB per rank against 45 MiB in one process).
    hidden = getattr(getattr(model, "config", None), "hidden_size", None) or 4096
    zero: dict[str, Any] = {"stage": int(ranks.strategy[-1]), "reduce_bucket_size": hidden * hidden,
                            "allgather_bucket_size": hidden * hidden}
    if zero["stage"] == 3:
        zero.update(stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
                    stage3_param_persistence_threshold=10 * hidden)
    config = {"train_micro_batch_size_per_gpu": batch_size, "gradient_accumulation_steps": 1,
              "gradient_clipping": max_grad_norm or 0.0, "zero_optimization": zero,
              "steps_per_print": 2**31 - 1, "wall_clock_breakdown": False}
    engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                                           config=config)
    return engine, optimizer, scheduler


def reshard(model: Any) -> None:
    """Return every FSDP2 module to its sharded state (a no-op for other models). Needed after an evaluation: a
    forward without backward leaves the root module unsharded (FSDP2 reshards the root at the end of backward),
    so its parameters are still the gathered plain tensors, and an optimizer built over model.parameters() then
    would update copies FSDP discards: measured, full fine-tuning's embeddings, norm and head never trained
    (last loss 10.18 against DDP's 8.93 on the tiny Llama; equal once resharded)."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def local_batch(idx: list[int], ranks: Ranks | None) -> list[int]:
    """This rank's share of the step's global batch (batch_size x world rows, the same order on every rank)."""
    if ranks is None:
        return idx
    share = len(idx) // ranks.world
    return idx[ranks.rank * share:(ranks.rank + 1) * share]


def fingerprint(model: Any) -> list[float]:
    """Float64 sum and sum of squares of every trainable tensor, in parameter order; a sharded (DTensor)
    parameter is gathered one at a time (`full_tensor`, a collective every rank joins), so each rank fingerprints
    the whole model."""
    import contextlib

    out = []
    with torch.no_grad():
        for p in model.parameters():
            if not p.requires_grad:
                continue
            gathered = contextlib.nullcontext()
            if hasattr(p, "ds_id"):  # a ZeRO-3 partition: gathered whole while it is read
                import deepspeed

                gathered = deepspeed.zero.GatheredParameters([p])
            with gathered:
                t = (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().double()
                out += [float(t.sum()), float((t * t).sum())]
    return out


def gather(obj: Any, ranks: Ranks) -> list[Any]:
    """`obj` from every rank, in rank order (a collective: every rank calls it)."""
    import torch.distributed as dist

    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def die_with_launcher() -> None:
    """A rank gets SIGKILL when its launcher dies (the runner kills the launcher on a timeout or Ctrl-C, and the
    kernel kills it with a killed parent), so no rank is left waiting in a collective."""
    import ctypes
    import signal

    if "LOCAL_RANK" not in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before the call
        os._exit(1)


def close() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
