"""What a run saves to continue after its own crash (`runner.checkpoint_every`), and how it continues.

Worker side (imports torch). Every N optimizer steps the training loop (training.py) saves, in one file written
atomically (a temporary file in the same folder, fsync, then rename over the last one), everything the next step
depends on: the trainable tensors (the adapter's, or every weight for full fine-tuning: the frozen ones are
rebuilt from the base and the seed), the optimizer's and the schedule's state (and the fp16 loss scaler's), the
RNG states (torch's CPU and CUDA generators: dropout; Python's and NumPy's, which transformers' set_seed seeds),
the data order's generator and the rows still due in the current pass, and the losses so far. A worker started
on a results folder that holds its run's file (`peftbench run --resume DIR`) loads it after the base evaluation
and goes on from the next step, so an uninterrupted run and an interrupted-and-resumed one with the same seed
end with the same weights (tests/system/test_checkpoint.py).

Written here rather than with accelerate's `save_state`: that saves a whole model (a 7B copy for a LoRA run)
and its own folder layout for a loop driven by `Accelerator.prepare`, which the harness's loop is not
(training.py), and it leaves the data order to a DataLoader the harness does not use.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Checkpointing:
    """A run's checkpoint file and how often it is saved; after training, what happened (for the record)."""

    path: Path
    every: int
    resumed_from: int | None = None  # the step the run continued from (None: it started at step 0)
    saved: int = 0  # checkpoints written by this process
    saved_s: float = 0.0  # seconds spent writing them (left out of train_s)

    def due(self, step: int, steps: int) -> bool:
        """A checkpoint after this step: every `every` steps, never after the last (the run is then done)."""
        return step % self.every == 0 and step < steps

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when the run has none (it starts at step 0)."""
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` atomically: a crash while writing leaves the previous checkpoint whole."""
        t0 = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.saved += 1
        self.saved_s += time.perf_counter() - t0


def trainable(model: Any) -> dict[str, Any]:
    """The trainable tensors by name (a tied weight once)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture(step: int, model: Any, optimizer: Any, scheduler: Any, scaler: Any, order_gen: torch.Generator,
            order: list[int], losses: list[float]) -> dict[str, Any]:
    """Everything the step after `step` depends on."""
    return {"step": step, "trainable": trainable(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
            "order_generator": order_gen.get_state(), "order": list(order), "losses": list(losses),
            "rng": rng_state()}


def restore(state: dict[str, Any], model: Any, optimizer: Any, scheduler: Any, scaler: Any,
            order_gen: torch.Generator) -> tuple[int, list[int], list[float]]:
    """Put the saved state back; returns (the step it was saved after, the rows still due, the losses so far)."""
    mine = dict(model.named_parameters())
    saved = state["trainable"]
    if set(saved) != set(trainable(model)):
        raise RuntimeError("the checkpoint's trainable tensors are not this run's (a different method or settings)")
    with torch.no_grad():
        for name, tensor in saved.items():
            mine[name].copy_(tensor)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    order_gen.set_state(state["order_generator"])
    set_rng_state(state["rng"])
    return state["step"], list(state["order"]), list(state["losses"])
