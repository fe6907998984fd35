"""Planning before anything runs: method settings from command-line options, and every run of a suite with its
exact parameter counts and predicted peak against a GPU budget. No torch import at module level (exact counts
import it on demand: `peftbench plan` builds meta-device models, `peftbench estimate` uses the analytic counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from . import catalog
from . import methods as registry
from .arch import arch_from_config
from .errors import PeftbenchError
from .estimate import GIB, Estimate, estimate, estimate_run, workload_for_suite


def settings_from_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """A method entry from `--rank/--alpha/--targets/--virtual-tokens`, as the method maps them (its `options`); an
    option the method does not map is an error."""
    m = registry.get(method)
    entry = m.settings_from_options(options)
    try:
        m.Settings.model_validate(entry)
    except ValidationError as err:
        first = err.errors()[0]
        raise PeftbenchError(f"{method}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return entry


def estimate_model(model: str, task: str, method: str, entry: dict[str, Any], workload,
                   num_labels: int = 2) -> Estimate:
    spec = catalog.resolve(model)
    arch = arch_from_config(spec.config, task, num_labels)
    m = registry.get(method)
    return estimate(arch, m.footprint(arch, m.Settings.model_validate(entry)), workload)


@dataclass
class PlanRow:
    run: str
    method: str
    trainable_params: int
    total_params: int
    counted: str  # "meta-device peft" or "analytic"
    peak_gib: float
    cuda_context_gib: float
    need_gib: float  # peak + CUDA context
    fits: bool | None  # None without a budget; the need within the budget less a margin (recommend.Budget)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_suite(loaded, gpu_gb: float | None, exact: bool = True, spread: tuple[int, str] = (1, "ddp")
               ) -> list[PlanRow]:
    """Every run of the suite: exact (meta-device) counts, predicted peak and whether it fits in `gpu_gb` GiB (with
    recommend's margin for allocator slack and the estimate's error). A run with its own `launch` is planned per
    process; `spread` (GPUs, strategy: plan --gpus --strategy) applies to the others."""
    from .recommend import Budget

    suite = loaded.resolved()
    model = suite["model"]
    spec = catalog.resolve(model["name"], model.get("config_overrides"), model.get("revision"))
    device = "cpu" if suite["training"]["device"] == "cpu" else "cuda"
    workload_for_suite(suite, device)  # validates the precision mapping before any model is built
    rows = []
    for run in loaded.runs:
        try:
            est = estimate_run(suite, run.method, run.settings, config=spec.config, device=device, spread=spread)
        except PeftbenchError as err:
            raise PeftbenchError(f"run {run.name}: {err}") from None
        trainable, total, how = est.trainable_params, est.total_params, "analytic"
        if exact:
            from .exact import exact_counts

            trainable, total = exact_counts(spec.config, model["task"], run.method, run.settings,
                                            model.get("num_labels") or 2)
            how = "meta-device peft"
        context = est.cuda_context_bytes / GIB
        need = est.peak_gib + context
        # the same fit decision as `recommend`: reserved memory runs 0-10% above the allocated peak, and the estimate
        # has its own error, so a run that needs 22.4 of 24 GiB does not fit
        fits = None if gpu_gb is None else need <= gpu_gb - Budget(gpu_gb).margin_gib
        rows.append(PlanRow(run.name, run.method, trainable, total, how, est.peak_gib, context, need, fits))
    return rows
