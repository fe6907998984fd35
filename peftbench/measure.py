"""Every measurement peftbench reports is defined here, once: what it includes, its warm-up, its synchronisation.

Worker side only (imports torch).

- Parameter counts: peft's `PeftModel.get_nb_trainable_parameters`, applied to every model (for full
  fine-tuning it is called on the plain model), so 4-bit weights count as their real element count.
- Peak tensor memory (`peak_mem_mib`), over model load + training, evaluation excluded:
  * CUDA: `torch.cuda.max_memory_allocated` (and `max_memory_reserved`), statistics reset before the model is
    loaded; evaluation in between is left out by reading the peak before it and resetting after it.
  * CPU: the CPU allocator's live-tensor total as recorded by `torch.profiler(profile_memory=True)` at every
    allocation, maximum over the allocations inside the load and train windows, less the live total when the
    profiler started (tensors that existed before the model load, such as the encoded dataset). The profiler
    runs from model load through the first `memory_profile_steps` optimizer steps: every training batch is padded
    to the same shape, so later steps repeat the same allocation pattern. Weights that `from_pretrained` leaves
    memory-mapped from the safetensors file never pass through the allocator, so right after loading they are
    copied into allocator memory (`own_cpu_storage`), as loading onto a GPU copies them into device memory: the
    peak counts the weights on both devices.
- `peak_rss_mib`: the worker process's peak resident set size (`getrusage(RUSAGE_SELF).ru_maxrss`) over its
  whole life (imports, data, load, training, evaluation): what the machine really had to hold.
- Latency: forward pass of a fixed batch in eval mode under `torch.inference_mode`, after `warmup` untimed
  passes, `repeats` timed passes, each synchronised on CUDA; p50/p90 of the per-pass wall times.
- `gen_ms_per_token`: greedy generation of exactly `gen_new_tokens` new tokens (KV cache on), after one
  untimed warm-up generation, mean wall time per generated token over `gen_repeats` generations: the prompt's
  prefill is inside it. `prefill_ms`: the same generation of one new token (one forward pass over the prompt,
  plus `generate()`'s fixed setup), mean over `gen_repeats`; `decode_ms_per_token`: (mean whole generation -
  prefill_ms) / (gen_new_tokens - 1), the cost of each further token.
- 4-bit models on a CPU (QLoRA): bitsandbytes' repacking of the weights for its AVX512-BF16 inference kernel is
  turned off when the model loads (`compat.keep_4bit_weights_trainable`), so training, evaluation and latency
  use the same generic 4-bit kernels, and the suite's compute dtype, on every CPU.
- `adapter_size_mb`: bytes written by `save_pretrained` (10^6 bytes = 1 MB); for full fine-tuning the bytes of
  the model's tensors (what a safetensors checkpoint holds, less its small header), computed rather than written.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MIB = 2**20


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) by peft's counter, which unpacks 4-bit Params4bit storage to its element count."""
    from peft import PeftModel

    # The counter only walks named_parameters(), so it serves plain models (full fine-tuning) as well.
    return PeftModel.get_nb_trainable_parameters(model)


def own_cpu_storage(model: Any) -> None:
    """Copy every CPU parameter and buffer into memory owned by torch's allocator (see the module docstring).

    Replacing `.data` keeps each Parameter object, so tied weights stay tied. bitsandbytes 4-bit weights are
    skipped: quantization already allocated them, and their quantization state points at their storage.
    """
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.device.type == "cpu" and type(t).__name__ not in ("Params4bit", "Int8Params"):
                t.data = t.data.clone()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak of live tensor memory over the phases entered with `window(...)`; see the module docstring."""

    WINDOW_PREFIX = "peftbench::peak::"

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = (
            "cuda max_memory_allocated (reset before load, eval excluded)"
            if device.type == "cuda"
            else "cpu torch.profiler live tensors above the pre-load baseline (load + first steps, eval excluded)"
        )
        self._prof = None
        self._cuda_peak = 0
        self._cuda_reserved = 0
        self.peak_bytes: int | None = None
        self.reserved_bytes: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            from torch.profiler import ProfilerActivity, profile

            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._prof.__enter__()

    @property
    def profiling(self) -> bool:
        return self._prof is not None

    def window(self, name: str):
        """Context manager marking a phase that counts towards the peak (e.g. 'load', 'train')."""
        return torch.profiler.record_function(self.WINDOW_PREFIX + name)

    def exclude_begin(self) -> None:
        """CUDA: fold the peak so far in before a phase that must not count (evaluation)."""
        if self.device.type == "cuda":
            self._cuda_fold()

    def exclude_end(self) -> None:
        if self.device.type == "cuda":
            # resetting sets each peak to the current value, and the current reserved memory still holds the
            # excluded phase's freed blocks in the caching allocator: release them first, or peak_reserved_mib
            # would count evaluation's cache
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def _cuda_fold(self) -> None:
        self._cuda_peak = max(self._cuda_peak, torch.cuda.max_memory_allocated(self.device))
        self._cuda_reserved = max(self._cuda_reserved, torch.cuda.max_memory_reserved(self.device))

    def close(self) -> None:
        """Leave the CPU profiler if it is still running, without reading it: the path of a failed run. A
        profiler left running crashes the process at exit (torch 2.13: 'record_function.cpp:255] Requested
        callback is not found', then SIGSEGV). No-op after `stop`."""
        if self._prof is not None:
            prof, self._prof = self._prof, None
            prof.__exit__(None, None, None)

    def stop(self) -> None:
        """End the CPU profiler window (training may go on unprofiled) or read the CUDA counters."""
        if self.device.type == "cuda":
            self._cuda_fold()
            self.peak_bytes, self.reserved_bytes = self._cuda_peak, self._cuda_reserved
        elif self._prof is not None:
            prof, self._prof = self._prof, None
            prof.__exit__(None, None, None)
            self.peak_bytes = profiler_peak_bytes(prof, self.WINDOW_PREFIX)


def profiler_peak_bytes(prof: Any, window_prefix: str) -> int | None:
    """Max of the CPU allocator's running total at allocations inside windows named `window_prefix*`.

    The public `prof.events()` view attributes memory to operators but drops the running total; the event tree
    keeps each allocation's `total_allocated` (live bytes of the allocator right after it), which is what a
    peak needs. That tree is torch's experimental profiler API, so this reads it defensively.
    """
    from torch._C._profiler import _EventType

    windows: list[tuple[int, int]] = []
    events: list[tuple[int, int, int]] = []  # (time, size: + alloc / - free, live total right after)
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.TorchOp and node.name.startswith(window_prefix):
            windows.append((node.start_time_ns, node.end_time_ns))
        elif node.tag == _EventType.Allocation and str(node.extra_fields.device) == "cpu":
            extra = node.extra_fields
            events.append((node.start_time_ns, extra.alloc_size, extra.total_allocated))
    if not events:
        return None
    events.sort()
    # Live bytes before the first profiled event: tensors that existed before the window opened (the encoded
    # dataset, leftovers of earlier work in the process). They are left out, as CUDA's counter leaves out
    # CPU-side data, so the figure is what loading and training added.
    baseline = events[0][2] - events[0][1]
    inside = [total for t, size, total in events if size > 0 and any(a <= t <= b for a, b in windows)]
    return max(inside) - baseline if inside else None


def time_repeated(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls of fn after `warmup` untimed calls, synchronised on CUDA."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default method)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1] if 0 < q < 100 else ordered[-1]


def variation(values: list[float]) -> float | None:
    """Coefficient of variation: the sample standard deviation over the mean (None for fewer than two values)."""
    if len(values) < 2 or not statistics.fmean(values):
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def directory_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def tensor_bytes_mb(model: Any) -> float:
    """Bytes of every tensor of the state dict, as a safetensors checkpoint stores them (ties counted once)."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.data_ptr(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total / 1e6
