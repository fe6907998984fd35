"""`peftbench run --ray ADDRESS`: a suite's jobs as Ray tasks, on a local Ray instance or on a cluster.

Each job is one Ray task that asks for one GPU (a GPU suite: Ray sets the task's CUDA_VISIBLE_DEVICES) or for
`cpus` cores (a CPU suite). The task runs the same worker subprocess a local run does, through runner.run_worker,
in a scratch results folder on its node, so a timeout, a crash or an out-of-memory becomes a record exactly as it
does locally; it returns the record and the worker's log, and the parent writes both into its own results folder,
atomically, as each task ends. Killing the parent loses only the tasks in flight (`--resume` runs them again).

Ray decides where each task runs; peftbench only says what a task needs. The nodes need peftbench and its
dependencies installed and the suite's local files (data, model folders) at the same paths. Ray is optional:
`pip install "peftbench[ray]"`. Written on Ray's task API (ray.remote, ray.wait, ray.cancel) rather than a home-made
scheduler; it imports ray only when `--ray` is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import PeftbenchError

# what a local run's workers see of the parent's environment and a Ray task's might not: passed explicitly
FORWARDED_ENV = ("PEFTBENCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "CUDA_LAUNCH_BLOCKING")


@dataclass(frozen=True)
class RayTarget:
    address: str  # "local", "auto", or a cluster address
    gpu: bool  # one GPU per task, else `cpus` cores
    cpus: int


def connect(address: str, gpu_suite: bool | None, cpus: int) -> RayTarget:
    """Start or join Ray, before anything runs; a one-line PeftbenchError when Ray is missing, the cluster cannot
    be reached, or it lacks what one run needs. gpu_suite None (device auto): GPUs when the cluster has some."""
    try:
        import ray
    except ImportError:
        raise PeftbenchError("--ray needs the ray package: pip install \"peftbench[ray]\" (or pip install ray)") \
            from None
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                                  configure_logging=False)
    try:
        if address == "local":  # a new Ray instance on this machine (not one RAY_ADDRESS or `ray start` names);
            # records are small, so a small object store
            ray.init(address="local", object_store_memory=100 * 2**20, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: all mean "cannot join"
        text = " ".join(str(err).split())[:300]
        raise PeftbenchError(f"--ray {address}: cannot start or join a Ray cluster: {text}") from None
    resources = dict(ray.cluster_resources())
    gpus = resources.get("GPU", 0)
    if gpu_suite and gpus < 1:
        raise PeftbenchError(f"--ray {address}: the suite runs on CUDA and the Ray cluster has no GPU")
    gpu = bool(gpu_suite) or (gpu_suite is None and gpus >= 1)
    # a task that no single node can hold would wait for ever, silently: its CPUs must fit on one node
    largest = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if largest < cpus:
        raise PeftbenchError(f"--ray-cpus {cpus}: the largest node of the Ray cluster has {largest:g} CPUs")
    return RayTarget(address, gpu, cpus)


def _run_remote(plan: Any, spec: Any, timeout_s: float, stable_rss: bool, env: dict[str, str]) -> tuple:
    """On the node: one worker in a scratch results folder; (record as a dict, its log, the node, its GPUs)."""
    import tempfile

    import ray

    from .results import ResultStore
    from .runner import run_worker, worker_env

    with tempfile.TemporaryDirectory(prefix="peftbench-ray-") as tmp:
        store = ResultStore(tmp)
        store.create({"ray_task": plan.key})
        record = run_worker(plan, spec, store, timeout_s, {**worker_env(stable_rss), **env}, lambda event: None)
        log_path = store.logs_dir / f"{plan.key}.log"
        log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    return asdict(record), log, ray.util.get_node_ip_address(), os.environ.get("CUDA_VISIBLE_DEVICES")


def run_on_ray(target: RayTarget, todo: list[tuple[int, Any]], make_spec: Callable[[Any], Any], store: Any,
               timeout_s: float, stable_rss: bool, progress: Any, n_jobs: int) -> None:
    """Submit every job, then take the results as they finish; each becomes a record and a log in `store`."""
    import ray

    from .results import RunRecord

    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    # the threads of the cores the task holds (Ray would set OMP_NUM_THREADS to them too), GPU tasks included
    env.update(OMP_NUM_THREADS=str(target.cpus), MKL_NUM_THREADS=str(target.cpus))
    task = ray.remote(num_gpus=1 if target.gpu else 0, num_cpus=target.cpus)(_run_remote)
    task = task.options(max_retries=0)  # a failed run is a result, never silently run twice
    pending: dict[Any, Any] = {}
    for i, plan in todo:
        spec = make_spec(plan)
        spec.write(store.root / "specs" / f"{plan.key}.json")  # provenance, as a local run keeps it
        progress.run_started(plan, i, n_jobs)
        pending[task.remote(plan, spec, timeout_s, stable_rss, env)] = (plan, spec.suite.training.seed)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            plan, seed = pending.pop(done[0])
            try:
                data, log, node, gpus = ray.get(done[0])
                record = RunRecord.from_dict(data)
            except Exception as err:  # noqa: BLE001 - a lost node or a task error: that run's record says so
                record = RunRecord(run=plan.name, method=plan.method, settings=plan.settings, seed=seed,
                                   status="failed", error=f"Ray task failed: {' '.join(str(err).split())[:300]}")
                log, node, gpus = "", None, None
            store.write(record, plan.key)
            (store.logs_dir / f"{plan.key}.log").write_text(log)
            manifest = store.manifest()
            runs = manifest.setdefault("ray", {"address": target.address, "runs": {}})["runs"]
            runs[plan.key] = {"node": node, "CUDA_VISIBLE_DEVICES": gpus}
            store.create(manifest)  # atomic, as every manifest write
            progress.run_finished(plan, record)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)  # kills the task's process, and with it its worker (PR_SET_PDEATHSIG)
        raise
