"""One run across several processes, the parent's side: a method entry's `launch` settings (or `run --launcher
accelerate --num-processes N --strategy S` for the entries without their own), which method x strategy pairs can
run (refused in one line before anything runs otherwise), and the `accelerate launch` command that starts the
worker's ranks. No torch import; the worker's side is peftbench/distributed.py, the figures docs/distributed.md.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

Strategy = Literal["ddp", "fsdp", "zero2", "zero3"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class Launch(BaseModel):
    """How one run is spread over processes (one per GPU; on a CPU, processes sharing its cores)."""

    model_config = ConfigDict(extra="forbid")

    processes: PositiveInt = Field(1, description="processes of the run, one GPU each; 1: an ordinary run")
    strategy: Strategy = Field("ddp", description="ddp: a full replica per process, gradients averaged; fsdp: "
                                                  "FSDP2, parameters, gradients and optimizer states sharded; "
                                                  "zero2, zero3: DeepSpeed ZeRO stage 2 (gradients and optimizer "
                                                  "states sharded) or 3 (parameters too)")
    config_file: str | None = Field(None, description="an accelerate config file given to accelerate launch (its "
                                                      "GPU ids, port); processes and strategy as read from it")

    @property
    def suffix(self) -> str:
        """What a multi-process run's name ends with (lora-r8-ddpx2), so it sits beside its one-process run."""
        return f"-{self.strategy}x{self.processes}" if self.processes > 1 else ""


# The method x strategy matrix (README, docs/distributed.md), from 2-process CPU runs of every pair (fp32 and bf16):
# tests/system/test_launch.py runs every pair not refused here and checks that its ranks end with the same weights.
def refusal(method: str, traits, launch: Launch, precision: str = "fp32") -> str | None:
    """Why this method cannot run under `launch` at this training.precision, as one line, or None when it can."""
    if launch.processes == 1 or launch.strategy == "ddp":
        return None
    s = launch.strategy
    if traits.quantized_base:
        return (f"{method} with {s}: {'FSDP' if s == 'fsdp' else 'DeepSpeed'} cannot shard bitsandbytes' packed "
                "weights unless they are stored in the model's dtype (bnb_4bit_quant_storage), which peftbench does "
                "not set yet; use ddp")
    if method == "adalora":
        return (f"adalora with {s}: AdaLoRA's rank allocation reads whole adapter matrices and their gradients "
                "after each step, which the sharded run does not hold; use ddp")
    if s.startswith("zero") and precision in ("bf16", "fp16-mixed"):
        return (f"{method} with {s} at precision {precision}: DeepSpeed trains 16-bit weights through its own fp32 "
                "master copies and loss scaling, not the harness's optimizer; use fsdp, or fp32 / bf16-mixed")
    return None


def from_config_file(path: str) -> Launch:
    """The launch an accelerate config file (`accelerate config`'s YAML or JSON) describes, or a PeftbenchError
    naming what peftbench cannot honour. Read as plain YAML: accelerate's own loader imports torch, which the
    parent never does. peftbench wraps the model itself (distributed.py), so of the file's FSDP settings only the
    version is read; its processes, machine count and mixed precision must be ones a run can keep."""
    import yaml

    from .errors import PeftbenchError

    try:
        cfg = yaml.safe_load(open(path))
    except (OSError, yaml.YAMLError) as err:
        raise PeftbenchError(f"--config-file {path}: {err}") from None
    if not isinstance(cfg, dict):
        raise PeftbenchError(f"--config-file {path}: not an accelerate config (expected a mapping)")
    kind = str(cfg.get("distributed_type", "NO"))
    where = f"--config-file {path}"
    if int(cfg.get("num_machines", 1) or 1) > 1:
        raise PeftbenchError(f"{where}: num_machines > 1: one run spans one machine (use --ray for several)")
    if str(cfg.get("mixed_precision", "no")) != "no":
        raise PeftbenchError(f"{where}: mixed_precision {cfg['mixed_precision']}: the suite's training.precision "
                             "decides it; set mixed_precision: 'no'")
    if kind == "DEEPSPEED":
        ds = cfg.get("deepspeed_config") or {}
        stage = int(ds.get("zero_stage", 0) or 0)
        if stage not in (2, 3) or ds.get("deepspeed_config_file"):
            raise PeftbenchError(f"{where}: DeepSpeed: peftbench runs ZeRO stage 2 or 3 as deepspeed_config."
                                 f"zero_stage says (stage {stage}), without a deepspeed_config_file of its own")
        if ds.get("offload_optimizer_device", "none") != "none" or ds.get("offload_param_device", "none") != "none":
            raise PeftbenchError(f"{where}: DeepSpeed offload is not supported by peftbench")
        # read, not passed on: accelerate would start DeepSpeed's own launcher; the worker configures the engine
        return Launch(processes=_processes(cfg, where), strategy=f"zero{stage}")
    elif kind == "FSDP":
        fsdp = cfg.get("fsdp_config") or {}
        if int(fsdp.get("fsdp_version", 1)) != 2:
            raise PeftbenchError(f"{where}: FSDP version 1 (it needs use_orig_params=False and peft's wrap policy "
                                 "for adapters): peftbench runs FSDP2; set fsdp_config.fsdp_version: 2")
        if fsdp.get("fsdp_offload_params"):
            raise PeftbenchError(f"{where}: fsdp_offload_params is not supported by peftbench's FSDP2 wrapping")
        strategy = "fsdp"
    elif kind in ("MULTI_GPU", "MULTI_CPU"):
        strategy = "ddp"
    else:
        raise PeftbenchError(f"{where}: distributed_type {kind}: peftbench launches MULTI_GPU or MULTI_CPU (ddp), "
                             "FSDP (fsdp) and DEEPSPEED (zero2, zero3) configs")
    return Launch(processes=_processes(cfg, where), strategy=strategy, config_file=str(Path(path).resolve()))


def _processes(cfg: dict, where: str) -> int:
    from .errors import PeftbenchError

    processes = int(cfg.get("num_processes", 1) or 1)
    if processes < 2:
        raise PeftbenchError(f"{where}: num_processes {processes}: a multi-process run needs 2 or more")
    return processes


def free_port() -> int:
    """A TCP port free now on this machine, for the ranks' rendezvous (two launched runs never share one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(launch: Launch, cpu: bool, spec: str, result: str, cores: int) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that start the worker's `launch.processes` ranks through accelerate.

    On a CPU: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu` (gloo; `--cpu --num_processes 2` would start
    one process, silently), each rank with an equal share of the cores. Every option that decides the launch is
    given, so a user's default accelerate config cannot change it (a `config_file` is passed on, for its GPU ids
    and port; from_config_file read the rest); the worker wraps the model itself (distributed.py)."""
    config = ["--config_file", launch.config_file] if launch.config_file else []
    argv = [sys.executable, "-m", "accelerate.commands.launch", *config, "--multi_gpu", "--num_machines", "1",
            "--num_processes", str(launch.processes), "--main_process_port", str(free_port()),
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "peftbench.worker", spec, result]
    env: dict[str, str] = {}
    if cpu:
        threads = str(max(1, cores // launch.processes))
        env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "DS_ACCELERATOR": "cpu"}  # DeepSpeed's CPU accelerator (gloo without oneCCL), for zero2/zero3
    return argv, env
