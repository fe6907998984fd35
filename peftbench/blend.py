"""`peftbench blend`: load several LoRA adapters onto one base model, combine them at chosen weights with peft's
`add_weighted_adapter`, and score every blend on every adapter's own task, like any other run.

Torch side (imports torch, transformers, peft); the CLI imports it on demand. Each adapter's
task is the suite it was trained with: read from the results directory of the `peftbench run` that saved it
(`runner.save_adapters: true` puts adapters in <results>/adapters/<run>, next to manifest.json), or given as a
suite file for an adapter from elsewhere (a local directory or a hub id). The evaluation is the worker's own
(`evaluation.evaluate`): the same rows, metrics and settings as the run that trained the adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PeftbenchError
from .merge import read_adapter_config

COMBINATIONS = ("cat", "linear", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "magnitude_prune")


@dataclass
class Source:
    """One adapter to blend: its name, where it is, and the suite that defines its task."""

    name: str
    adapter: str  # a local directory or a hub id
    suite: Any  # peftbench.suite.Suite
    suite_dir: Path | None


@dataclass
class BlendRow:
    weights: dict[str, float]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # task name -> metric -> value


def source_from(name: str, adapter: str, suite_file: Path | None) -> Source:
    """The adapter and its task: `suite_file` if given, else the manifest of the results directory it was saved in."""
    from .suite import Suite, load_suite

    if suite_file is not None:
        loaded = load_suite(suite_file)
        return Source(name, adapter, loaded.suite, Path(loaded.path).resolve().parent)
    manifest = Path(adapter).expanduser().resolve().parent.parent / "manifest.json"
    if not manifest.is_file():
        raise PeftbenchError(f"adapter {name}: {adapter} is not inside a peftbench results directory (no "
                             f"{manifest}); say which suite defines its task with --task {name}=SUITE.yaml")
    resolved = json.loads(manifest.read_text())["resolved_suite"]
    return Source(name, adapter, Suite.model_validate(resolved), None)


def check(sources: list[Source], weight_sets: list[list[float]]) -> None:
    if len(sources) < 2:
        raise PeftbenchError("a blend needs at least two adapters (--adapter NAME=DIR, twice or more)")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise PeftbenchError(f"adapter names must differ: {', '.join(names)}")
    for ws in weight_sets:
        if len(ws) != len(sources):
            raise PeftbenchError(f"--weights {','.join(map(str, ws))}: give one weight per adapter ({len(sources)})")
    def base(s: Source) -> str:
        overrides = s.suite.model.config_overrides
        return s.suite.model.name + (f" with {json.dumps(overrides, sort_keys=True)}" if overrides else "")

    if len({base(s) for s in sources}) > 1:
        raise PeftbenchError("the adapters were trained on different base models: "
                             + "; ".join(f"{s.name}: {base(s)}" for s in sources))
    from . import tasks

    if len({s.suite.model.task for s in sources}) > 1:
        raise PeftbenchError("the adapters were trained for different tasks: "
                             + "; ".join(f"{s.name}: {s.suite.model.task}" for s in sources))
    with_head = [s.name for s in sources if tasks.get(s.suite.model.task).head == "classifier"]
    if with_head:
        raise PeftbenchError(f"blends are for language-model adapters; {', '.join(with_head)} carries a "
                             "classification head of its own, which has no meaning for another task")
    for s in sources:
        local = Path(s.adapter).expanduser()
        if local.is_dir():
            peft_type = read_adapter_config(local).get("peft_type")
            if peft_type != "LORA":
                raise PeftbenchError(f"adapter {s.name}: {peft_type}; blends combine LoRA adapters")
        elif s.adapter.startswith((".", "/", "~")):
            raise PeftbenchError(f"adapter {s.name}: directory not found: {s.adapter}")


def blend(sources: list[Source], weight_sets: list[list[float]], combination: str = "cat",
          density: float = 0.5) -> list[BlendRow]:
    """Score the blend at every weight set on every adapter's task. `cat` sums the weighted updates exactly
    (w1 B1 A1 + w2 B2 A2); `linear` mixes A and B matrices of equal rank; the ties/dare types prune by `density`."""
    check(sources, weight_sets)
    from . import data as data_mod
    from . import models
    from .models import quiet_libraries

    quiet_libraries()
    from peft import PeftModel

    models.quiet_progress()

    from .context import make_context
    from .evaluation import evaluate

    first = sources[0].suite
    path = models.model_path(first.model)
    tokenizer = models.load_tokenizer(first.model, path)
    ctx = make_context(first, path)
    base = models.load_model(first.model, path, tokenizer, ctx.load_dtype, ctx.device, {})
    model = PeftModel.from_pretrained(base, sources[0].adapter, adapter_name=sources[0].name)
    for s in sources[1:]:
        model.load_adapter(s.adapter, adapter_name=s.name)
    evals = {}
    for s in sources:
        rows = data_mod.load_rows(s.suite.dataset, s.suite.model.task, s.suite_dir)
        max_len = s.suite.training.max_length
        evals[s.name] = (s.suite, ctx.task.eval_data(ctx.task.fit(rows.eval, tokenizer, max_len), tokenizer, max_len))
    rows = []
    for i, ws in enumerate(weight_sets):
        blend_name = f"blend{i}"
        kwargs = {"density": density} if combination.startswith(("ties", "dare", "magnitude")) else {}
        model.add_weighted_adapter([s.name for s in sources], [float(w) for w in ws], blend_name,
                                   combination_type=combination, **kwargs)
        model.set_adapter(blend_name)
        row = BlendRow(weights={s.name: float(w) for s, w in zip(sources, ws, strict=True)})
        for name, (suite, data) in evals.items():
            row.scores[name] = evaluate(model, ctx, suite, data, tokenizer).scores
        rows.append(row)
        model.set_adapter(sources[0].name)
        model.delete_adapter(blend_name)
    return rows
