"""Parent side of `peftbench run`: checks, one worker subprocess per method run, timeouts, resume, provenance.

Never imports torch: everything heavy happens in `peftbench.worker` processes. A run that crashes, runs out of
memory or times out becomes a record with that status, and the suite goes on. Records are written atomically
as each run ends, so killing `peftbench run` loses at most the run in progress; `--resume DIR` skips runs that
already have a record.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import methods as registry
from .data import check_source, load_rows
from .environment import provenance
from .errors import PeftbenchError
from .launch import command as launch_command
from .launch import refusal
from .methods.base import RunPlan
from .models import check_available
from .protocol import WorkerSpec, parse_progress
from .results import ResultStore, RunRecord
from .suite import LoadedSuite, launch_of

# ---- checks before anything expensive ------------------------------------------------------------------------


def cuda_available() -> bool:
    """Ask a throwaway interpreter, so the parent never imports torch (and never initialises CUDA)."""
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cuda_bf16() -> tuple[bool, str]:
    """(whether the first GPU computes in bf16, its name), from a throwaway interpreter as cuda_available."""
    code = ("import torch, sys; print(torch.cuda.get_device_name(0)); "
            "sys.exit(0 if torch.cuda.is_bf16_supported(including_emulation=False) else 3)")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return True, ""  # cannot tell: the worker's own error will say
    return done.returncode != 3, done.stdout.strip()  # any other failure cannot tell either


def cuda_reasons(loaded: LoadedSuite) -> list[str]:
    """Why this suite needs CUDA, if it does."""
    t = loaded.suite.training
    reasons = []
    if t.device == "cuda":
        reasons.append("training.device is cuda")
    if t.precision == "fp16-mixed":
        reasons.append("fp16-mixed precision needs CUDA")
    methods = registry.load_all()
    reasons += [f"method {r.method} needs CUDA" for r in loaded.runs if methods[r.method].traits.needs_cuda]
    return reasons


def preflight(loaded: LoadedSuite, check_cuda: Callable[[], bool] | None = None, at_once: int = 1) -> list[str]:
    """Stop with one clear line before anything expensive if the suite cannot run here; else the notes the user
    should read before it runs (check_suite)."""
    suite = loaded.suite
    t = suite.training
    needs = cuda_reasons(loaded)
    bf16 = t.precision in ("bf16", "bf16-mixed")
    if needs and t.device == "cpu":
        raise PeftbenchError(f"{loaded.path}: {needs[0]}, but training.device is cpu")
    if needs or (bf16 and t.device == "auto"):  # auto on a GPU machine runs on the GPU: the bf16 check applies
        has_cuda = (check_cuda or cuda_available)()
        if needs and not has_cuda:
            raise PeftbenchError(f"{loaded.path} needs a CUDA GPU ({needs[0]}) and this machine has none")
        if has_cuda and bf16:
            ok, name = cuda_bf16()  # a Turing card (T4, RTX 20xx) has no bf16: every run would fail alike
            if not ok:
                raise PeftbenchError(f"{loaded.path}: training.precision {t.precision} needs a GPU with bf16 "
                                     f"(compute capability 8.0 or newer); {name or 'this GPU'} has none: use "
                                     "fp16-mixed")
    if loaded.launched():
        check_launches(loaded, launches_on_cpu(loaded, check_cuda))
    return check_suite(loaded, hub_data=True, at_once=at_once)


def launches_on_cpu(loaded: LoadedSuite, check_cuda: Callable[[], bool] | None = None) -> bool:
    """Whether the suite's multi-process runs run on the CPU (device cpu, or auto on a machine without GPUs)."""
    device = loaded.suite.training.device
    return device == "cpu" or (device == "auto" and not (check_cuda or cuda_available)())


def check_launch_pairs(loaded: LoadedSuite) -> None:
    """Every multi-process run is one peftbench can run (launch.refusal), as one line on the first that is not."""
    suite = loaded.suite
    for plan in loaded.runs:
        launch = launch_of(plan)
        if launch.processes == 1:
            continue
        where = f"{loaded.path}: run {plan.name}"
        why = refusal(plan.method, registry.get(plan.method).traits, launch, suite.training.precision)
        if why:
            raise PeftbenchError(f"{where}: {why}")
        if suite.runner.save_adapters:
            raise PeftbenchError(f"{where}: runner.save_adapters: a multi-process run does not save its adapter yet; "
                                 "save it from a one-process run")
        if plan.settings.get("trainer") == "trl":
            raise PeftbenchError(f"{where}: trainer: trl runs in one process here (TRL distributes itself through "
                                 "accelerate; not wired yet)")
        if suite.runner.checkpoint_every:
            raise PeftbenchError(f"{where}: runner.checkpoint_every: a multi-process run does not checkpoint yet "
                                 "(each rank holds a shard of the state); checkpoint one-process runs")


def check_launches(loaded: LoadedSuite, cpu: bool, ids: Callable[[], list[str]] | None = None,
                   cores: Callable[[], int] | None = None) -> None:
    """Every multi-process run can start here, as one line on the first that cannot: its method x strategy pair
    (check_launch_pairs), and a GPU per process on this machine (a CPU: a core per process)."""
    check_launch_pairs(loaded)
    for plan in loaded.runs:
        launch = launch_of(plan)
        if launch.processes == 1:
            continue
        where = f"{loaded.path}: run {plan.name}"
        have = (cores or cpu_cores)() if cpu else len((ids or cuda_device_ids)())
        if launch.processes > have:
            unit = "core" if cpu else "GPU"
            raise PeftbenchError(f"{where}: {launch.processes} processes, one {unit} each, and this machine has "
                                 f"{have} {unit}s")


def check_suite(loaded: LoadedSuite, hub_data: bool, at_once: int = 1) -> list[str]:
    """Everything that can be known without loading weights, as one line on the first problem: the model can be
    had, the data source exists and its rows are sound (classification: the classes, resolved into the suite),
    every run's target modules select layers of the model and its method has something to train there, and on a
    CPU every run's predicted tensors fit in the memory available. Returns the notes (decisions about the data,
    settings worth a second look). A hub dataset's rows are read only with `hub_data` (`validate` downloads
    nothing)."""
    suite = loaded.suite
    suite_dir = Path(loaded.path).resolve().parent
    notes: list[str] = []
    check_launch_pairs(loaded)
    if any(r.settings.get("trainer") == "trl" for r in loaded.runs) and importlib.util.find_spec("trl") is None:
        raise PeftbenchError(f"{loaded.path}: trainer: trl needs the trl package, which is not installed (pip install "
                             "\"peftbench[trl]\")")
    check_available(suite.model, suite_dir)
    check_source(suite.dataset, suite.model.task, suite_dir)
    if suite.dataset.hub and not hub_data:
        notes.append(f"dataset {suite.dataset.hub}: its rows are checked by peftbench run (validate downloads nothing)")
    else:
        rows = load_rows(suite.dataset, suite.model.task, suite_dir, suite.model.num_labels, suite.model.label_names)
        suite.model.num_labels, suite.model.label_names = rows.num_labels, rows.label_names
        notes += rows.notes
    notes += check_runs(loaded, suite_dir, at_once)
    return notes


def check_runs(loaded: LoadedSuite, suite_dir: Path, at_once: int = 1) -> list[str]:
    """Each run on the model's architecture, from the memory model: target modules that select nothing are an
    error naming the run; on a CPU, a run whose predicted tensors alone exceed the memory available now (psutil's
    `available`: free plus reclaimable cache) stops the suite; rank warnings come back as notes. A model whose
    architecture the memory model does not know (or whose config cannot be read without loading it) is noted.
    With `at_once` runs at a time (--parallel on a CPU), the `at_once` largest predicted peaks together must fit."""
    from . import catalog
    from .arch import NoMatchingTargets, NotApplicable, arch_from_config
    from .estimate import GIB, estimate_run

    suite = loaded.resolved()
    model = suite["model"]
    try:
        config = catalog.resolve(model["name"], model.get("config_overrides"), model.get("revision"), suite_dir).config
        arch = arch_from_config(config, model["task"], model.get("num_labels") or 2)
    except PeftbenchError as err:
        return [f"runs not checked against the model's layers: {err}"]
    available = None
    if suite["training"]["device"] == "cpu":
        import psutil

        available = psutil.virtual_memory().available
    notes = []
    peaks: list[tuple[float, str]] = []
    for plan in loaded.runs:
        method = registry.get(plan.method)
        launch = launch_of(plan)
        try:
            footprint = method.footprint(arch, method.Settings.model_validate(plan.settings))
        except (NoMatchingTargets, NotApplicable) as err:
            raise PeftbenchError(f"{loaded.path}: run {plan.name}: {err}") from None
        except PeftbenchError as err:  # a method without a memory model: nothing to check against
            notes.append(f"run {plan.name}: not checked ({err})")
            continue
        notes += [f"run {plan.name}: {note}" for note in footprint.notes]
        if available is not None:
            est = estimate_run(suite, plan.method, plan.settings, config=config, device="cpu")
            need = est.peak_bytes * launch.processes  # the ranks of a multi-process CPU run share the machine
            if need > available:
                ranks = f" ({launch.processes} processes)" if launch.processes > 1 else ""
                raise PeftbenchError(f"{loaded.path}: run {plan.name}{ranks} is predicted to hold "
                                     f"{need / GIB:,.1f} GiB of tensors at its peak (peftbench plan), more "
                                     f"than the {available / GIB:,.1f} GiB of memory available on this machine")
            peaks.append((need, plan.name))
    together = sorted(peaks, reverse=True)[:at_once]
    if available is not None and at_once > 1 and sum(b for b, _ in together) > available:
        names = ", ".join(name for _, name in together)
        raise PeftbenchError(f"{loaded.path}: --parallel {at_once}: {names} together are predicted to hold "
                             f"{sum(b for b, _ in together) / GIB:,.1f} GiB of tensors at their peaks, more than the "
                             f"{available / GIB:,.1f} GiB of memory available; run fewer at a time")
    return notes


def new_manifest(loaded: LoadedSuite) -> dict[str, Any]:
    return {
        "suite_name": loaded.suite.name,
        "suite_path": str(Path(loaded.path).resolve()),
        "suite_sha256": loaded.sha256,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(),
        "resolved_suite": loaded.resolved(),
        "runs": [{"name": r.name, "method": r.method, "settings": r.settings} for r in loaded.runs],
        "seeds": loaded.suite.seeds,
        "resumed_at": [],
    }


# ---- where workers run: --parallel --------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One place a worker runs: a GPU (its CUDA_VISIBLE_DEVICES id) or a share of the CPU's cores (its threads)."""

    name: str
    env: dict[str, str]


def cuda_device_ids() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES ids: the variable's own list when it is set, else
    0..n-1 for the n GPUs a throwaway interpreter sees (the parent never initialises CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]
    code = "import torch; print(torch.cuda.device_count())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        n = int(done.stdout.strip() or 0)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        n = 0
    return [str(i) for i in range(n)]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_slots(parallel: int, ids: list[str]) -> list[Slot]:
    """One slot per GPU, `parallel` of them: each worker sees only its GPU (as cuda:0)."""
    if parallel > len(ids):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise PeftbenchError(f"--parallel {parallel}: one GPU per run, and this machine shows {len(ids)}{where}")
    return [Slot(f"gpu {i}", {"CUDA_VISIBLE_DEVICES": i}) for i in ids[:parallel]]


def cpu_slots(parallel: int, cores: int) -> list[Slot]:
    """`parallel` slots that split the cores evenly (OMP/MKL threads), so concurrent workers do not oversubscribe
    the CPU; each record's `device` names its thread count."""
    if parallel > cores:
        raise PeftbenchError(f"--parallel {parallel}: CPU runs get at least one core each, and this machine has "
                             f"{cores}")
    threads = str(cores // parallel)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return [Slot(f"cpu {i + 1}/{parallel} ({threads} threads)", env) for i in range(parallel)]


def plan_slots(loaded: LoadedSuite, parallel: int, ids: Callable[[], list[str]] | None = None,
               cores: Callable[[], int] | None = None) -> list[Slot]:
    """Where `--parallel N` runs the suite's workers: one GPU each for a CUDA suite (device cuda, or auto on a GPU
    machine), else an equal share of the CPU cores; one line (exit 2) when the machine has too few. parallel 1
    keeps the worker's environment as it is (every thread, every visible GPU)."""
    if parallel < 1:
        raise PeftbenchError(f"--parallel {parallel}: at least 1")
    if parallel == 1:
        return [Slot("", {})]
    device = loaded.suite.training.device
    gpus = (ids or cuda_device_ids)() if device in ("cuda", "auto") else []
    if device == "cuda" or gpus:
        return gpu_slots(parallel, gpus)
    return cpu_slots(parallel, (cores or cpu_cores)())


# ---- one worker -------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Callbacks the CLI gives the runner (rich progress there, nothing in tests)."""

    run_started: Callable[[RunPlan, int, int], None] = lambda plan, i, n: None
    event: Callable[[RunPlan, dict], None] = lambda plan, event: None
    run_finished: Callable[[RunPlan, RunRecord], None] = lambda plan, record: None
    run_kept: Callable[[RunPlan, RunRecord], None] = lambda plan, record: None
    run_retried: Callable[[RunPlan, RunRecord], None] = lambda plan, record: None


# Workers running now (their process group ids): an interrupted parallel suite kills them all. PR_SET_PDEATHSIG
# fires when the *thread* that started a worker ends; a scheduling thread always outlives its worker (it waits for
# it), and a killed parent takes every thread, so a worker never outlives a dead parent.
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by an interrupt: no new worker starts, and a killed one writes no record


class Interrupted(Exception):
    """A worker killed because the suite was interrupted: no record, `--resume` runs it again."""


def kill_live_workers() -> None:
    _STOPPING.set()
    with _LIVE_LOCK:
        pids = list(_LIVE)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies, so a killed `peftbench run` leaves no orphan."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def worker_env(stable_rss: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if stable_rss:
        # glibc serves allocations above this size with mmap and returns them at free: RSS then tracks live
        # memory and repeats to ~1 MiB between runs, instead of an inflated, noisy high-water mark.
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    return env


def _last_error_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def worker_command(plan: RunPlan, spec_path: Path, result_path: Path, cpu: bool) -> tuple[list[str], dict[str, str]]:
    """The worker's argv and extra environment: one process, or the run's ranks through `accelerate launch`."""
    launch = launch_of(plan)
    if launch.processes > 1:
        return launch_command(launch, cpu, str(spec_path), str(result_path), cpu_cores())
    return [sys.executable, "-m", "peftbench.worker", str(spec_path), str(result_path)], {}


def run_worker(plan: RunPlan, spec: WorkerSpec, store: ResultStore, timeout_s: float, env: dict[str, str],
               on_event: Callable[[dict], None], cpu: bool = True) -> RunRecord:
    """Start one worker (a multi-process run: its launcher, on the CPU when `cpu`), relay its progress, enforce
    the timeout, and return its record (always one)."""
    spec_path = store.root / "specs" / f"{plan.key}.json"
    spec.write(spec_path)
    result_path = store.record_path(plan.key)
    log_path = store.logs_dir / f"{plan.key}.log"
    argv, launch_env = worker_command(plan, spec_path, result_path, cpu)
    with open(log_path, "w") as log:
        if _STOPPING.is_set():
            raise Interrupted(plan.key)
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, env={**env, **launch_env},
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        with _LIVE_LOCK:
            _LIVE.add(proc.pid)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        timed_out, eof = False, False
        while not eof:
            try:
                line = lines.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            event = parse_progress(line) if line else None
            if line is None:
                eof = True
            elif event is not None:
                on_event(event)
            elif line:
                log.write(line)
            if not eof and time.monotonic() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own process group
                break
        code = proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(proc.pid)
    if _STOPPING.is_set() and not store.has(plan.key):
        raise Interrupted(plan.key)  # killed by the interrupt, not by itself: not a failure to record
    seed = spec.suite.training.seed
    if timed_out:
        record = RunRecord(run=plan.name, method=plan.method, settings=plan.settings, seed=seed, status="timeout",
                           error=f"no result after {timeout_s:g} s (runner.timeout_s); worker killed")
        store.write(record, plan.key)
        return record
    if code < 0:
        name = signal.Signals(-code).name
        oom = " (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else ""
        why = f"worker killed by {name}{oom}"
    else:
        why = f"worker exited with code {code}"
    record = store.read(plan.key) if store.has(plan.key) else None
    if record is not None:
        if code != 0:  # it wrote its result, then crashed (e.g. in native teardown): keep the result, say so
            record.error = "; ".join(filter(None, [record.error, f"{why} after writing its result"]))
            store.write(record, plan.key)
        return record
    why += "" if code < 0 else " without a result"
    last = _last_error_line(log_path)
    record = RunRecord(run=plan.name, method=plan.method, settings=plan.settings, seed=seed, status="failed",
                       error=f"{why}; last log line: {last}" if last else why)
    store.write(record, plan.key)
    return record


# ---- the suite ---------------------------------------------------------------------------------------------------


def checkpoint_path(store: ResultStore, plan: RunPlan) -> Path:
    """Where a job's checkpoint lives (runner.checkpoint_every): a run killed part-way continues from it under
    `--resume`; it is removed once the run has its ok record."""
    return store.root / "checkpoints" / f"{plan.key}.pt"


def default_results_dir(loaded: LoadedSuite, base: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"{loaded.suite.name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{loaded.suite.name}-{stamp}-{n}"
    return path


def open_store(loaded: LoadedSuite, results_base: Path, resume: Path | None) -> ResultStore:
    if resume is None:
        store = ResultStore(default_results_dir(loaded, results_base))
        store.create(new_manifest(loaded))
        return store
    store = ResultStore(resume)
    if not store.manifest_path.is_file():
        raise PeftbenchError(f"--resume {resume}: no manifest.json there (not a peftbench results directory)")
    manifest = store.manifest()  # a truncated one is one line: without it the suite it ran is unknown
    if manifest.get("suite_sha256") != loaded.sha256:
        raise PeftbenchError(f"--resume {resume}: it holds results of a different suite file (sha256 differs)")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    manifest["resumed_at"] = manifest.get("resumed_at", []) + [now]
    store.create(manifest)
    return store


def run_suite(loaded: LoadedSuite, results_base: Path = Path("results"), resume: Path | None = None,
              progress: Progress | None = None, slots: list[Slot] | None = None, ray: Any = None) -> ResultStore:
    """Run every job of the suite (a method run, or with `seeds` a (run, seed)) that has no ok record yet (a
    resumed folder's failed, oom and timed-out jobs are run again, and so are jobs whose record is unreadable);
    return the store holding all records. With several `slots` (plan_slots: --parallel) that many workers run at
    once, each in its slot's environment; every job still gets its own worker, record, timeout and log, so the
    records are those of a sequential run (timings aside: concurrent CPU workers share cores and memory bandwidth).
    With `ray` (ray_runner.connect: --ray) every job is a Ray task instead, wherever Ray places it."""
    progress = progress or Progress()
    slots = slots or [Slot("", {})]
    _STOPPING.clear()
    store = open_store(loaded, results_base, resume)
    if len(slots) > 1:
        manifest = store.manifest()
        manifest["parallel"] = manifest.get("parallel", []) + [[slot.name for slot in slots]]
        store.create(manifest)
    suite = loaded.suite
    env = worker_env(suite.runner.stable_rss)
    suite_dir = str(Path(loaded.path).resolve().parent)
    jobs = loaded.jobs()
    on_cpu = launches_on_cpu(loaded) if loaded.launched() else True  # where a multi-process run's ranks go
    todo: list[tuple[int, RunPlan]] = []
    for i, plan in enumerate(jobs, 1):
        earlier = store.read(plan.key) if store.has(plan.key) else None
        if earlier is not None and earlier.status == "ok":
            progress.run_kept(plan, earlier)
            continue
        if earlier is not None:
            progress.run_retried(plan, earlier)
        todo.append((i, plan))

    lock = threading.Lock()  # progress callbacks from several scheduling threads, one at a time

    def job_spec(plan: RunPlan) -> WorkerSpec:
        adapter_dir = str(store.root / "adapters" / plan.key) if suite.runner.save_adapters else None
        job_suite = suite if plan.seed is None else suite.model_copy(
            update={"training": suite.training.model_copy(update={"seed": plan.seed})})
        return WorkerSpec(suite=job_suite, run=plan, suite_dir=suite_dir, adapter_dir=adapter_dir,
                          checkpoint_path=str(checkpoint_path(store, plan)) if suite.runner.checkpoint_every else None)

    if ray is not None:
        from .ray_runner import run_on_ray

        run_on_ray(ray, todo, job_spec, store, suite.runner.timeout_s, suite.runner.stable_rss, progress, len(jobs))
        return store

    def run_job(i: int, plan: RunPlan, slot: Slot) -> None:
        with lock:
            progress.run_started(plan, i, len(jobs))
        spec = job_spec(plan)

        def on_event(ev: dict) -> None:
            with lock:
                progress.event(plan, ev)

        record = run_worker(plan, spec, store, suite.runner.timeout_s, {**env, **slot.env}, on_event, on_cpu)
        if record.status == "ok":  # done: its checkpoint (a whole model's state for full fine-tuning) has no use
            checkpoint_path(store, plan).unlink(missing_ok=True)
        with lock:
            progress.run_finished(plan, record)

    if len(slots) == 1:
        for i, plan in todo:
            run_job(i, plan, slots[0])
        return store
    pending: queue.Queue[tuple[int, RunPlan]] = queue.Queue()
    for job in todo:
        pending.put(job)
    errors: list[BaseException] = []

    def scheduler(slot: Slot) -> None:  # one per slot: take the next job, run it in this slot, until none is left
        while not errors:
            try:
                i, plan = pending.get_nowait()
            except queue.Empty:
                return
            try:
                run_job(i, plan, slot)
            except Interrupted:
                return
            except BaseException as err:  # noqa: BLE001 - the main thread re-raises it after the others stop
                errors.append(err)

    threads = [threading.Thread(target=scheduler, args=(slot,), daemon=True) for slot in slots]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)  # a bare join would not see Ctrl-C
    except BaseException:
        errors.append(KeyboardInterrupt())
        kill_live_workers()  # the records already written stay; `--resume` runs the rest
        raise
    if errors:
        raise errors[0]
    return store
