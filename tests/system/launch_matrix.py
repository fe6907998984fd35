"""The method x strategy matrix, as ranks of one launch: every method on the tiny causal suite through the worker's
own `run`, under each strategy, in one process group (one launch instead of one per pair: a launch costs ~15 s
of imports on 2 cores). Started by tests/system/test_launch.py as

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        -m tests.system.launch_matrix OUT.json [PRECISION]

Rank 0 writes {"<method>:<strategy>": {"status", "error", "ranks_in_sync", "world_size", "loss_last"}} for every
pair launch.refusal does not refuse (a refused pair is not tried: one rank failing inside a collective would leave
the other waiting).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from peftbench import methods, models, worker
from peftbench.launch import STRATEGIES, Launch, refusal

from ..conftest import TINY_CAUSAL, applicable, spec_for


def main(out: str, precision: str = "fp32") -> None:
    base = {**TINY_CAUSAL, "training": {**TINY_CAUSAL["training"], "precision": precision}}
    pairs = []
    for name, method in sorted(methods.load_all().items()):
        if method.traits.needs_cuda:
            continue
        for strategy in STRATEGIES:
            launch = Launch(processes=2, strategy=strategy)
            if not refusal(name, method.traits, launch, precision):
                pairs.append((name, strategy, spec_for(applicable(base, name), name, launch=launch.model_dump())))
    for *_, spec in pairs:  # every built-in model built before the first run joins the group, as the worker does
        models.model_path(spec.suite.model)  # (transformers saves on rank 0 only once a group exists)
    results = {}
    for name, strategy, spec in pairs:
        record = worker.new_record(spec)
        try:
            worker.run(spec, record)
        except Exception as err:  # noqa: BLE001 - the test reports the pair
            record.error = f"{type(err).__name__}: {err}"
        results[f"{name}:{strategy}"] = {"status": record.status, "error": record.error,
                                         "ranks_in_sync": record.ranks_in_sync, "world_size": record.world_size,
                                         "loss_last": record.train_loss_last}
    import torch.distributed as dist

    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
