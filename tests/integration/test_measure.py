"""Measurement definitions on known inputs (torch, CPU) and on CUDA where there is one."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from peftbench.measure import PeakMemory, count_parameters, percentile, time_repeated  # noqa: E402


def test_cpu_peak_counts_only_the_windows_above_the_baseline():
    before = torch.zeros(1_000_000)  # 4 MB live before the window: not counted
    mem = PeakMemory(torch.device("cpu"))
    mem.start()
    with mem.window("load"):
        a = torch.zeros(250_000)  # +1 MB
    evaluation = torch.zeros(4_000_000)  # 16 MB outside any window: not a peak
    del evaluation
    with mem.window("train"):
        b = torch.zeros(500_000)  # +2 MB -> 3 MB
        c = torch.zeros(250_000)  # +1 MB -> 4 MB peak
        del c
    mem.stop()
    assert mem.peak_bytes == 4_000_000
    del a, b, before


def test_percentile_matches_linear_interpolation():
    values = [10.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3 + 0.7 * 7)
    assert percentile([5.0], 90) == 5.0


def test_time_repeated_counts_repeats_only():
    calls = []
    times = time_repeated(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=5)
    assert len(times) == 5 and len(calls) == 7 and all(t >= 0 for t in times)


def test_count_parameters_plain_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == (3 + 3 * 2 + 2, 4 * 3 + 3 + 3 * 2 + 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_excludes_evaluation():
    dev = torch.device("cuda")
    mem = PeakMemory(dev)
    mem.start()
    a = torch.zeros(1_000_000, device=dev)
    mem.exclude_begin()
    big = torch.zeros(50_000_000, device=dev)
    del big
    mem.exclude_end()
    b = torch.zeros(2_000_000, device=dev)
    mem.stop()
    assert 12_000_000 <= mem.peak_bytes < 200_000_000
    assert mem.reserved_bytes >= mem.peak_bytes
    # the excluded 200 MB block's cache is released before the reset: reserved does not count it either
    assert mem.reserved_bytes < 100_000_000
    del a, b


def test_a_run_that_fails_inside_the_memory_window_leaves_no_profiler_running(monkeypatch):
    """A profiler left running crashes the process at exit (SIGSEGV after 'Requested callback is not found'), and
    the next run in the same process would start a second one inside it: the window closes on every path."""
    import contextlib
    import io

    from peftbench import worker

    from ..conftest import TINY_CAUSAL, spec_for

    def fail(*args, **kwargs):
        raise RuntimeError("injected failure in an optimizer step")

    monkeypatch.setattr(torch.optim.AdamW, "step", fail)
    spec = spec_for(TINY_CAUSAL, "lora")
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(RuntimeError, match="injected"):
        worker.run(spec, worker.new_record(spec))
    assert not torch._C._autograd._profiler_enabled()
