"""The recommender: a fine-tuning method and its settings for a GPU memory budget and a data size, with reasons.

No torch import. How an answer is made, in order:

1. Candidates come from the method registry: every method that gives `advice` proposes its settings (LoRA at
   several ranks and targets, ...), with a prior score and a starting learning rate (peftbench/methods/*.py).
2. Memory is decided by the analytic memory model (peftbench/estimate.py), never by bytes per parameter: each
   candidate gets the largest micro-batch that fits without gradient checkpointing, else with it (full
   fine-tuning may also fall back to 8-bit AdamW). The budget is the card's nominal memory in GiB, less the
   CUDA context and a safety margin (`Budget`).
3. Rules (RULES below: data, each with a one-line justification and a source) add to each candidate's score:
   data size, model size, target modules, the user's priority, and measured scores from a peftbench run.
4. The answer is the highest-scoring candidate that fits; the others are listed with the reason they lost.

Scores do not depend on the budget except through what fits (and, for the speed priority, whether gradient
checkpointing is needed, which only goes away with more memory), so more memory never gives a worse answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalog, tasks
from . import methods as registry
from .arch import Arch, Footprint, NotApplicable, arch_from_config
from .errors import PeftbenchError
from .estimate import CUDA_CONTEXT_GIB, Estimate, Workload, estimate
from .methods.base import Advice, Traits
from .metrics import METRICS, PRIMARY

DEFAULT_SEQ_LEN = 512  # tokens per sequence when --seq-len is not given: a typical instruction-tuning sample
MARGIN_FRACTION = 0.10  # of the budget: allocator slack (reserved - allocated, 0-10%) and the estimate's error
BATCHES = (8, 4, 2, 1)  # micro-batch sizes tried, largest first
EFFECTIVE_BATCH = 16  # sequences per optimizer step; gradient accumulation makes up the rest
PRIORITIES = ("quality", "memory", "speed", "latency", "adapter-size")
# One representative per common size, for the table printed when no --model is given.
SIZE_TABLE = (("0.5B", "qwen2.5-0.5b"), ("1B", "llama-3.2-1b"), ("3B", "llama-3.2-3b"), ("7B", "llama-2-7b"),
              ("13B", "llama-2-13b"), ("70B", "llama-2-70b"))
SMALL_DATA, MEDIUM_DATA, LARGE_DATA = 1_000, 10_000, 100_000  # examples; the data-size rules use them


@dataclass(frozen=True)
class Request:
    gpu_gb: float
    examples: int
    model: str | None = None
    seq_len: int = DEFAULT_SEQ_LEN
    task: str = tasks.DEFAULT  # a registered task kind
    priority: str = "quality"
    gpus: int = 1
    results: Path | None = None


@dataclass(frozen=True)
class Budget:
    """What the fit decision may use: the nominal GiB less the CUDA context and a safety margin."""

    gpu_gib: float

    @property
    def cuda_context_gib(self) -> float:
        return CUDA_CONTEXT_GIB

    @property
    def margin_gib(self) -> float:
        return MARGIN_FRACTION * self.gpu_gib

    @property
    def usable_gib(self) -> float:
        return self.gpu_gib - self.cuda_context_gib - self.margin_gib

    @staticmethod
    def needed_for(peak_gib: float) -> float:
        """The smallest nominal budget whose usable part holds `peak_gib`."""
        return (peak_gib + CUDA_CONTEXT_GIB) / (1 - MARGIN_FRACTION)

    def to_json(self) -> dict[str, float]:
        return {"gpu_gb": self.gpu_gib, "cuda_context_gib": self.cuda_context_gib,
                "margin_gib": round(self.margin_gib, 3), "usable_gib": round(self.usable_gib, 3)}


@dataclass
class Candidate:
    """One method with one set of settings, as the recommender proposes it."""

    method: str
    settings: dict[str, Any]  # validated method settings, `method` included
    label: str
    footprint: Footprint
    advice: Advice  # the method's: prior, why, learning rate, proxy
    traits: Traits  # the method's: mergeable, quantized base, extra positions, gradient checkpointing
    family: str  # the method's family (peftbench/methods/base.py)
    rank: int | None  # the rank of a low-rank update, as the method reads it from its settings

    @property
    def all_linear(self) -> bool:
        return self.settings.get("target_modules") == "all-linear"


@dataclass
class Option:
    """A candidate under a budget: the workload chosen for it, its estimate there, and its score."""

    cand: Candidate
    workload: Workload
    est: Estimate
    fits: bool
    lean_peak_gib: float  # the peak at its leanest workload: the budget-free tie-break, and the no-fit answer
    score: float = 0.0
    effects: list[tuple[str, float]] = field(default_factory=list)  # (rule name, score change)
    measured: str | None = None  # the measured number a `measured-scores` rule used

    @property
    def peak_gib(self) -> float:
        return self.est.peak_gib

    def config(self) -> dict[str, Any]:
        w = self.workload
        cfg = {k: v for k, v in self.cand.settings.items()
               if k not in ("method", "enabled", "learning_rate", "launch")}
        if "ranks" in cfg:
            cfg["rank"] = cfg.pop("ranks")[0]
            cfg["alpha"] = cfg.get("alpha") or 2 * cfg["rank"]
        cfg.update(batch_size=w.batch, gradient_accumulation=w.grad_accum,
                   gradient_checkpointing=w.grad_ckpt, precision=w.precision, optimizer=w.optimizer,
                   learning_rate=self.cand.advice.learning_rate, seq_len=w.seq_len)
        if w.gpus > 1:
            cfg.update(gpus=w.gpus, strategy=w.strategy)
        return cfg

    def launch_hint(self) -> str | None:
        """How `peftbench run` executes a multi-GPU answer (its strategies are launch.STRATEGIES: ddp, fsdp)."""
        w = self.workload
        if w.gpus <= 1:
            return None
        return (f"run it across {w.gpus} GPUs: `launch: {{processes: {w.gpus}, strategy: {w.strategy}}}` in the "
                f"suite's method entry, or peftbench run SUITE --launcher accelerate --num-processes {w.gpus} "
                f"--strategy {w.strategy}")


# ---- rules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    says: str  # one-line justification
    source: str  # paper, published benchmark, or our own measurement
    applies: Callable[[Request, Arch], bool]
    effect: Callable[[Option, Request, Arch], float]


def _data_rank(examples: int) -> int:
    return 8 if examples < SMALL_DATA else 16 if examples < MEDIUM_DATA else 64 if examples < LARGE_DATA else 256


def _rank_effect(o: Option, req: Request, arch: Arch) -> float:
    r = o.cand.rank if o.cand.family == "low-rank" else None
    return -0.25 * abs(math.log2(r / _data_rank(req.examples))) if r else 0.0


def _few_params(o: Option, arch: Arch) -> bool:
    """Methods outside the full and low-rank families that train under 0.1% of the model (IA3, prompt and prefix
    tuning at usual sizes)."""
    return o.cand.family not in ("full", "low-rank") and o.cand.footprint.trainable < 1e-3 * arch.total_params


# PEFT's MetaMathQA benchmark (huggingface/peft method_comparison/MetaMathQA/results, Llama-3.2-3B, 20,000
# examples, GSM8K test accuracy; result files named in benchmarks/published_gpu.yaml): full fine-tuning 0.500,
# LoRA r10 on the MLP 0.526, LoRA r32 on q,v 0.482, IA3 0.412 (lr 1e-3), VeRA 0.369, prompt tuning 0.253 (lr 1e-3),
# prefix tuning 0.147.
MC = "PEFT MetaMathQA benchmark (Llama-3.2-3B, 20,000 examples, GSM8K accuracy)"
# benchmarks/data_size.py (docs/measurements.md): MiniLM-L6 on the built-in sentiment task, 250 steps at every
# size, accuracy on 400 held-out rows.
CURVE = "peftbench data-size curve (MiniLM-L6, built-in sentiment task, docs/measurements.md)"

RULES: tuple[Rule, ...] = (
    Rule("rank-for-data-size",
         "LoRA's rank should grow with the data: r8 under 1,000 examples, r16 under 10,000, r64 under 100,000, "
         "r256 beyond (-0.25 per doubling away)",
         "Hu et al. 2021 (LoRA) Table 6: r=1 already matches r=64 on WikiSQL/MNLI; Schulman et al. 2025 (LoRA "
         "Without Regret): LoRA matches full fine-tuning until the data exceeds the adapter's capacity",
         lambda req, arch: True, _rank_effect),
    Rule("lora-on-every-linear",
         "LoRA on attention projections only trails LoRA on every linear layer (MLP included)",
         f"Dettmers et al. 2023 (QLoRA) §4: 'LoRA on all linear transformer block layers are required to match "
         f"full finetuning'; Schulman et al. 2025: attention-only LoRA underperforms; {MC}: r10 on the MLP 0.526 "
         f"vs r32 on q,v 0.482 at the same parameter count",
         lambda req, arch: True,
         lambda o, req, arch: -0.5 if o.cand.family == "low-rank" and not o.cand.all_linear else 0.0),
    Rule("small-data-no-full",
         "under 1,000 examples full fine-tuning gains nothing over adapters, at several times the memory and a "
         "whole-model checkpoint",
         f"{CURVE}: at 200 examples full 0.860 vs LoRA 0.873-0.882, QLoRA 0.895, IA3 0.902; at 50 full 0.642 vs "
         "LoRA r16 0.637, IA3 0.670; Schulman et al. 2025: LoRA performs the same as full fine-tuning on small and "
         "medium datasets",
         lambda req, arch: req.examples < SMALL_DATA,
         lambda o, req, arch: -1.0 if o.cand.footprint.full else 0.0),
    Rule("tiny-data-few-parameters",
         "under 1,000 examples, scaling vectors (IA3) learn as well as LoRA from the few examples there are "
         "(+0.75; prompt and prefix tuning excepted: they fail at small scale)",
         f"{CURVE}: IA3 0.670 / 0.902 / 1.000 at 50 / 200 / 1,000 examples, the best or tied at each; Liu et al. "
         "2022 (T-Few): IA3 in the few-shot regime",
         lambda req, arch: req.examples < SMALL_DATA,
         lambda o, req, arch: 0.75 if _few_params(o, arch) and not o.cand.traits.extra_positions else 0.0),
    Rule("few-parameter-methods-trail-with-data",
         "from 10,000 examples, methods that train under 0.1% of the weights (IA3, prompt and prefix tuning) "
         "fall behind LoRA and full fine-tuning",
         f"{MC}: IA3 0.412, prompt tuning 0.253, prefix tuning 0.147 vs full 0.500 and LoRA 0.48-0.53",
         lambda req, arch: req.examples >= MEDIUM_DATA,
         lambda o, req, arch: -1.0 if _few_params(o, arch) else 0.0),
    Rule("large-data-full",
         "from 100,000 examples full fine-tuning's capacity pays: it beats LoRA at usual ranks",
         "Biderman et al. 2024 (LoRA Learns Less and Forgets Less): with ~100K instruction pairs LoRA "
         "'substantially underperforms full finetuning'; Schulman et al. 2025: datasets beyond LoRA's capacity",
         lambda req, arch: req.examples >= LARGE_DATA,
         lambda o, req, arch: 1.0 if o.cand.footprint.full else 0.0),
    Rule("soft-prompts-need-scale",
         "prompt and prefix tuning are competitive only for models of about 10B parameters and more",
         "Lester et al. 2021 (The Power of Scale for Parameter-Efficient Prompt Tuning): prompt tuning matches "
         f"model tuning at the 11B XXL size; {MC}: prompt 0.253 and prefix 0.147 on a 3B model; {CURVE}: prompt "
         "tuning at chance at every size, prefix 0.87-0.89 where the others reach 0.99",
         lambda req, arch: arch.total_params < 10e9,
         lambda o, req, arch: -2.0 if o.cand.traits.extra_positions else 0.0),
    Rule("priority-memory",
         "--priority memory: the smaller the share of the budget a candidate needs at its leanest (batch 1, "
         "checkpointing), the better (up to -2)",
         "the memory model (peftbench estimate)",
         lambda req, arch: req.priority == "memory",
         lambda o, req, arch: -2.0 * min(1.0, (o.lean_peak_gib + CUDA_CONTEXT_GIB) / req.gpu_gb)),
    Rule("priority-speed",
         "--priority speed, about -1 per 50% more time per step: gradient checkpointing recomputes the forward "
         "pass (-0.5), a 4-bit base dequantises every linear (-1), full fine-tuning computes every weight "
         "gradient (-1.5)",
         "transformers docs: checkpointing ~20% slower; Raschka 2023 (LoRA insights): QLoRA 10,060 s vs LoRA "
         f"6,686 s; {MC}: full fine-tuning 3,111 s vs LoRA r64 1,853 s",
         lambda req, arch: req.priority == "speed",
         lambda o, req, arch: -(0.5 * o.workload.grad_ckpt + 1.0 * o.cand.traits.quantized_base
                                + 1.5 * o.cand.footprint.full)),
    Rule("priority-latency",
         "--priority latency: methods that lengthen every sequence cost latency forever (-1.5); other "
         "non-mergeable methods -0.5; merged LoRA/IA3 cost nothing",
         "Hu et al. 2021 (LoRA): no inference latency once merged; peftbench latency_ms_p50 per method "
         "(docs/measurements.md)",
         lambda req, arch: req.priority == "latency",
         lambda o, req, arch: -1.5 if o.cand.traits.extra_positions else (0.0 if o.cand.traits.mergeable else -0.5)),
    Rule("priority-adapter-size",
         "--priority adapter-size: -1 per tenfold more trained parameters to store and serve (from 1M)",
         "adapter size is proportional to trainable parameters (peftbench adapter_size_mb)",
         lambda req, arch: req.priority == "adapter-size",
         lambda o, req, arch: -1.0 * math.log10(max(o.cand.footprint.trainable, 1) / 1e6)),
)
MEASURED_RULE = Rule(
    "measured-scores",
    "measured evaluation scores from a peftbench run rank the methods it measured: -2 per 10 accuracy points "
    "(or per 10 exact-match points, or per factor e of perplexity) behind the best",
    "the --results directory's records (peftbench run)",
    lambda req, arch: req.results is not None,
    lambda o, req, arch: 0.0,  # applied by `_apply_measured`, which knows the records
)


# ---- candidates -----------------------------------------------------------------------------------------------


def _label(method: str, rank: int | None, settings: dict[str, Any]) -> str:
    parts = [method]
    if rank is not None:
        parts.append(f"r{rank}")
    targets = settings.get("target_modules")
    if targets:
        parts.append(targets if isinstance(targets, str) else ",".join(targets))
    if settings.get("num_virtual_tokens"):
        parts.append(f"{settings['num_virtual_tokens']} tokens")
    return " ".join(parts)


def candidates(arch: Arch) -> list[Candidate]:
    """Every method's proposed settings, resolved for `arch` (attention-only LoRA uses peft's default targets)."""
    out = []
    for m in registry.load_all().values():
        if m.advice is None:
            continue
        for proposal in m.advice.candidates:
            settings = m.Settings.model_validate({"method": m.name, **proposal})
            try:
                fp = m.footprint(arch, settings)
            except NotApplicable:  # nothing to train on this architecture (BitFit without biases)
                continue
            dumped = settings.model_dump(exclude_defaults=False)
            rank = m.rank(settings)
            label_settings = {**proposal, **({"target_modules": ",".join(arch.lora_defaults)}
                                             if m.family == "low-rank" and "target_modules" not in proposal else {})}
            out.append(Candidate(
                method=m.name, settings=dumped, label=_label(m.name, rank, label_settings), footprint=fp,
                advice=m.advice, traits=m.traits, family=m.family, rank=rank))
    return out


def _workloads(cand: Candidate, req: Request):
    """Workloads to try, best first: no checkpointing at the largest batch that fits, then checkpointing; full
    fine-tuning may fall back to 8-bit AdamW, and shards its state over several GPUs."""
    strategy = "fsdp" if cand.footprint.full and req.gpus > 1 else "ddp"
    optimizers = ("adamw", "adamw8bit") if cand.footprint.full else ("adamw",)
    for opt in optimizers:
        for gc in (False, True) if cand.traits.gradient_checkpointing else (False,):
            for b in BATCHES:
                yield Workload(batch=b, seq_len=req.seq_len, precision="bf16", grad_ckpt=gc, optimizer=opt,
                               gpus=req.gpus, strategy=strategy, device="cuda",
                               grad_accum=max(1, math.ceil(EFFECTIVE_BATCH / b)))


def fit(cand: Candidate, arch: Arch, req: Request, budget: Budget) -> Option:
    """The first workload whose predicted peak fits the usable budget, or the leanest one (not fitting)."""
    tried = [(w, estimate(arch, cand.footprint, w)) for w in _workloads(cand, req)]
    lean_w, lean = min(reversed(tried), key=lambda t: t[1].peak_bytes)  # ties: the smallest batch, with GC
    for w, est in tried:
        if est.peak_gib <= budget.usable_gib:
            return Option(cand, w, est, True, lean.peak_gib)
    return Option(cand, lean_w, lean, False, lean.peak_gib)


# ---- measured results -----------------------------------------------------------------------------------------


# the first score a run has (and that is not 0) ranks the methods: each task kind's primary score, then the older
# ones (records from before ROUGE-L have exact match)
RANKED_BY = tuple(dict.fromkeys([*PRIMARY.values(), "exact_match", "perplexity"]))


def _metric(rec) -> tuple[str, float] | None:
    """(metric, value) a record is ranked by, or None without an evaluation score."""
    for name in RANKED_BY:
        value = rec.score(name)
        if value is not None and (value or name != "exact_match"):  # exact match 0 everywhere says nothing
            return name, value
    return None


def load_measured(results: Path, task: str):
    """One record per run of a peftbench results directory, checked against the requested task: its first ok
    seed's, with every score replaced by the mean over the run's ok seeds (summary.py), so a run of several seeds
    counts once, by its mean."""
    from dataclasses import replace

    from .results import ResultStore
    from .summary import summarize

    store = ResultStore(results)
    if not store.runs_dir.is_dir():
        raise PeftbenchError(f"--results {results}: not a peftbench results directory (no runs/)")
    runs = [s for s in summarize(store.records(), rows=False) if s.ok]
    means = [replace(s.ok[0], eval={m: s.mean(f"eval_{m}") for m in s.ok[0].eval}) for s in runs]
    records = [r for r in means if _metric(r) is not None]
    if not records:
        raise PeftbenchError(f"--results {results}: no finished run with an evaluation score")
    manifest = store.manifest_or_none() or {}
    model = (manifest.get("resolved_suite") or {}).get("model") or {}
    if model.get("task") and model["task"] != task:
        raise PeftbenchError(f"--results {results} was measured on task {model['task']}, but --task asks for {task}")
    return records, model.get("name")


def _record_rank(rec) -> int | None:
    """The rank a measured run's method reads from its settings (None when it has none or they no longer validate)."""
    try:
        m = registry.get(rec.method)
        return m.rank(m.Settings.model_validate(rec.settings))
    except (PeftbenchError, ValueError):
        return None


def _apply_measured(options: list[Option], records: list) -> None:
    """Score each candidate by the record of its method (same rank when measured, else the nearest rank), or of
    its method's proxy (QLoRA: LoRA); a candidate with neither gets the mean change of the measured ones, so
    being unmeasured neither helps nor hurts it against the average."""
    kinds = {_metric(r)[0] for r in records}
    kind = next(k for k in RANKED_BY if k in kinds)
    usable = [r for r in records if _metric(r)[0] == kind]

    def value(r) -> float:  # higher is better: per 10 points of a share, per factor e of a perplexity
        v = _metric(r)[1]
        return 10 * v if METRICS[kind].higher_is_better else -math.log(v)

    best = max(value(r) for r in usable)
    unmeasured = []
    for o in options:
        proxy = o.cand.advice.proxy
        same = [r for r in usable if r.method == o.cand.method] or \
            [r for r in usable if proxy and r.method == proxy]
        if not same:
            unmeasured.append(o)
            continue
        rec = min(same, key=lambda r: abs((_record_rank(r) or 0) - (o.cand.rank or 0)))
        delta = 2.0 * (value(rec) - best)
        o.score += delta
        o.effects.append((MEASURED_RULE.name, delta))
        o.measured = f"{rec.run}: {kind} {_metric(rec)[1]:.4g}"
    measured = [d for o in options for name, d in o.effects if name == MEASURED_RULE.name]
    mean = sum(measured) / len(measured) if measured else 0.0
    for o in unmeasured:
        o.score += mean
        o.effects.append((MEASURED_RULE.name, mean))
        o.measured = "not measured: the mean change of the measured candidates"


# ---- the answer -----------------------------------------------------------------------------------------------


@dataclass
class Recommendation:
    request: Request
    model: str
    params: int
    budget: Budget
    chosen: Option | None
    options: list[Option]  # every candidate, best first
    rules_fired: list[Rule]
    smallest_budget_gib: float | None  # when nothing fits: the smallest nominal budget at which something would
    notes: list[str] = field(default_factory=list)

    def reason(self, o: Option) -> str:
        """One line: why this option was chosen, or why it was not."""
        need = f"needs ~{o.peak_gib + CUDA_CONTEXT_GIB:,.1f} GiB with the CUDA context"
        if not o.fits:
            w = o.workload
            leanest = f"batch {w.batch}{', grad-ckpt' if w.grad_ckpt else ''}"
            leanest += f", {w.optimizer}" if w.optimizer != "adamw" else ""
            return (f"{o.cand.label}: {need} even at {leanest}, over the usable {self.budget.usable_gib:,.1f} GiB of "
                    f"the {self.budget.gpu_gib:g} GiB budget")
        effects = ", ".join(f"{name} {d:+.2f}" for name, d in o.effects if d) or "no rule changed it"
        text = f"{o.cand.label}: fits ({need}); score {o.score:+.2f} (prior {o.cand.advice.prior:+.2f}; {effects})"
        if self.chosen is not None and o is not self.chosen:
            text += f"; below {self.chosen.cand.label} ({self.chosen.score:+.2f})"
        return text

    def reasons(self) -> list[str]:
        out = []
        if self.chosen is None:
            out.append(f"nothing fits in the usable {self.budget.usable_gib:,.1f} GiB of {self.budget.gpu_gib:g} GiB "
                       f"(CUDA context {CUDA_CONTEXT_GIB:g} GiB and a {MARGIN_FRACTION:.0%} margin kept aside)")
            if self.smallest_budget_gib is not None:
                out.append(f"the smallest budget at which something fits: {self.smallest_budget_gib:,.1f} GiB")
            return out
        c = self.chosen
        out.append(f"{c.cand.label}: highest score among the {sum(o.fits for o in self.options)} candidates that fit "
                   f"({c.score:+.2f})")
        out.append(f"prior {c.cand.advice.prior:+.2f}: {c.cand.advice.why}")
        for name, delta in c.effects:
            if delta:
                rule = next(r for r in (*RULES, MEASURED_RULE) if r.name == name)
                out.append(f"{name} {delta:+.2f}: {rule.says}")
        w = c.workload
        out.append(f"memory: predicted peak {c.peak_gib:,.2f} GiB + CUDA context {CUDA_CONTEXT_GIB:g} GiB within the "
                   f"usable {self.budget.usable_gib:,.1f} GiB (batch {w.batch} x {w.seq_len} tokens"
                   f"{', gradient checkpointing' if w.grad_ckpt else ''}"
                   f"{', ' + w.optimizer if w.optimizer != 'adamw' else ''})")
        if w.grad_ckpt:
            out.append("gradient checkpointing is on because no batch size fits without it")
        if w.batch < BATCHES[0]:
            out.append(f"micro-batch lowered to {w.batch} to fit; gradient accumulation {w.grad_accum} keeps "
                       f"{EFFECTIVE_BATCH} sequences per step")
        if c.measured:
            out.append(f"measured: {c.measured}")
        return out

    def to_json(self) -> dict[str, Any]:
        c = self.chosen
        return {
            "model": self.model,
            "params": self.params,
            "examples": self.request.examples,
            "task": self.request.task,
            "seq_len": self.request.seq_len,
            "priority": self.request.priority,
            "gpus": self.request.gpus,
            "budget": self.budget.to_json(),
            "method": c.cand.method if c else None,
            "label": c.cand.label if c else None,
            "config": c.config() if c else None,
            "estimated_peak_gib": round(c.peak_gib, 3) if c else None,
            "fits": bool(c),
            "score": round(c.score, 3) if c else None,
            "reasons": self.reasons(),
            "rules_fired": [{"name": r.name, "says": r.says, "source": r.source} for r in self.rules_fired],
            "smallest_budget_gib": None if self.smallest_budget_gib is None else round(self.smallest_budget_gib, 2),
            "alternatives": [
                {"method": o.cand.method, "label": o.cand.label, "config": o.config(),
                 "estimated_peak_gib": round(o.peak_gib, 3), "fits": o.fits, "score": round(o.score, 3),
                 "reason": self.reason(o), "measured": o.measured}
                for o in self.options if o is not c
            ],
            "notes": self.notes,
        }


def resolve_arch(model: str, task: str) -> tuple[str, Arch]:
    spec = catalog.resolve(model)
    return spec.name, arch_from_config(spec.config, task)


def recommend(req: Request, measured: tuple[list, str | None] | None = None) -> Recommendation:
    """The recommendation for one model (req.model must be set)."""
    if req.model is None:
        raise PeftbenchError("recommend needs a model; use recommend_table for every common size")
    name, arch = resolve_arch(req.model, req.task)
    budget = Budget(req.gpu_gb)
    options = [fit(c, arch, req, budget) for c in candidates(arch)]
    fired = [r for r in RULES if r.applies(req, arch)]
    for o in options:
        o.score = o.cand.advice.prior
        for r in fired:
            delta = r.effect(o, req, arch)
            o.score += delta
            o.effects.append((r.name, delta))
    notes = []
    if measured is not None:
        records, measured_model = measured
        _apply_measured(options, records)
        fired.append(MEASURED_RULE)
        if _canonical(measured_model) != name:
            notes.append(f"the measured scores come from {measured_model or 'an unnamed model'}, not {name}: they "
                         f"rank the methods; the memory figures are {name}'s")
    # Best first: score, then the smaller leanest peak, then the label. None of the three depends on the budget,
    # so the order is the same at every budget and only the set that fits changes.
    options.sort(key=lambda o: (-o.score, o.lean_peak_gib, o.cand.label))
    fitting = [o for o in options if o.fits]
    chosen = fitting[0] if fitting else None
    smallest = None if chosen else min(Budget.needed_for(o.lean_peak_gib) for o in options)
    return Recommendation(req, name, arch.total_params, budget, chosen, options, fired, smallest, notes)


def _canonical(model: str | None) -> str | None:
    """The catalog's name for a model (hub ids map to catalog names), or the name as given."""
    try:
        return catalog.resolve(model).name if model else None
    except PeftbenchError:
        return model


def recommend_table(req: Request) -> list[tuple[str, Recommendation]]:
    """One recommendation per common model size (SIZE_TABLE), for the same budget, data size and task."""
    from dataclasses import replace

    return [(size, recommend(replace(req, model=model))) for size, model in SIZE_TABLE]
