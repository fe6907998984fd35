"""The suite schema: YAML -> typed, validated settings. No torch import.

A suite names one model, one dataset, training/evaluation/latency settings and the methods to compare.
Validation is strict: unknown keys and wrong types are errors naming the file and the key path, and every
problem of a file is reported at once (`SuiteError`). Method entries are checked against each method's own
settings model from the registry, so a new method's keys are validated without editing this file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from . import methods as registry
from .errors import SuiteError, did_you_mean
from .launch import Launch
from .methods.base import RunPlan

Precision = Literal["fp32", "bf16", "bf16-mixed", "fp16-mixed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        return refuse_booleans(cls, data)


def refuse_booleans(model: type[BaseModel], data: Any) -> Any:
    """pydantic reads `true` as 1 for a number field; in a suite that is a typo, not a count."""
    if isinstance(data, dict):
        for name, field in model.model_fields.items():
            value = data.get(name)
            if isinstance(value, bool) and "bool" not in str(field.annotation):
                raise ValueError(f"{name}: expected a number, got {str(value).lower()}")
    return data


class ModelConfig(_Strict):
    name: str = Field(description="'builtin:minilm', 'builtin:tiny-llama', a local directory, or a hub id")
    task: str = Field(description="a registered task kind (`peftbench methods` lists them): classification, causal_lm")
    num_labels: PositiveInt | None = Field(None, description="classification: classes of the head; default: from the "
                                                             "data (the class names, or the largest label + 1)")
    label_names: list[str] | None = Field(None, description="classification: class names in index order, for text "
                                                            "labels; default: the data's, sorted")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    trust_remote_code: bool = Field(False, description="run code shipped with a hub model; off unless set here")
    config_overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="builtin:tiny-llama only: LlamaConfig fields (hidden_size, ...)"
    )


    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from . import tasks

        kinds = tasks.load_all()
        if v not in kinds:
            raise ValueError(f"unknown task {v!r}{did_you_mean(v, kinds)}; known: {', '.join(kinds)}")
        return v


class DatasetConfig(_Strict):
    builtin: str | None = Field(None, description="a built-in generated task (see `peftbench methods`)")
    path: str | None = Field(None, description="local .jsonl/.json/.csv/.parquet file")
    hub: str | None = Field(None, description="hub dataset id")
    hub_config: str | None = Field(None, description="hub dataset configuration (subset) name")
    train_split: str = Field("train", description="hub split the training rows come from")
    eval_split: str | None = Field(None, description="default: hold out eval_examples from the training split")
    train_examples: PositiveInt | None = Field(None, description="cap on training examples (default: all)")
    eval_examples: PositiveInt = Field(200, description="evaluation rows (held out of train without eval_split)")
    seed: NonNegativeInt = Field(0, description="shuffling and built-in generation seed")
    text_column: str = Field("text", description="classification: input text column")
    label_column: str = Field("label", description="classification: integer label column")
    prompt_template: str = Field("{input}\n", description="causal_lm: prompt, formatted with the row's columns")
    target_column: str = Field("output", description="causal_lm: the text the model must produce")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("builtin", "path", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of builtin, path, hub (got {', '.join(given) or 'none'})")
        return self


class TrainingConfig(_Strict):
    steps: PositiveInt | None = Field(None, description="optimizer steps (give steps or epochs)")
    epochs: PositiveFloat | None = Field(None, description="passes over the training rows (give steps or epochs)")
    batch_size: PositiveInt = Field(8, description="sequences per optimizer step")
    max_length: PositiveInt = Field(128, description="tokens per example; every batch is padded to it")
    learning_rate: PositiveFloat | None = Field(None, description="for every method; default: each method's own")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_steps: NonNegativeInt = Field(0, description="linear learning-rate warm-up")
    max_grad_norm: PositiveFloat | None = Field(1.0, description="gradient clipping norm; null: none")
    precision: Precision = Field("fp32", description="fp32; bf16 weights and activations; bf16-mixed / fp16-mixed: "
                                                     "fp32 weights under autocast (fp16-mixed: CUDA only)")
    gradient_checkpointing: bool = Field(False, description="recompute each block in backward (non-reentrant); a "
                                                            "method entry may override it")
    seed: NonNegativeInt = Field(0, description="data order, adapter initialisation, dropout")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when there is one")
    warmup_timing_steps: NonNegativeInt = Field(1, description="first steps left out of train_s")
    memory_profile_steps: PositiveInt = Field(
        3, description="CPU: steps inside the torch.profiler memory window (shapes are fixed, so later steps repeat)"
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps, epochs")
        return self


class EvaluationConfig(_Strict):
    batch_size: PositiveInt = Field(32, description="evaluation rows per forward pass (and per generate call)")
    max_new_tokens: PositiveInt = Field(16, description="causal_lm: greedy generation length for exact match and "
                                                        "ROUGE-L")


class LatencyConfig(_Strict):
    batch_size: PositiveInt = Field(1, description="sequences in the timed forward pass")
    seq_len: PositiveInt = Field(64, description="input tokens of the timed forward pass")
    warmup: NonNegativeInt = Field(3, description="untimed passes before the timed ones")
    repeats: PositiveInt = Field(20, description="timed passes (p50 and p90 are over these)")
    gen_new_tokens: PositiveInt = Field(16, description="causal_lm: tokens generated for gen_ms_per_token and "
                                                        "decode_ms_per_token (prefill_ms generates one)")
    gen_repeats: PositiveInt = Field(3, description="timed generations (after one untimed)")


class RunnerConfig(_Strict):
    timeout_s: PositiveFloat = Field(1800, description="per method run; the worker is killed after it")
    stable_rss: bool = Field(
        False, description="set MALLOC_MMAP_THRESHOLD_=65536 in the worker: RSS repeatable to 1 MiB, steps ~1.6x "
                           "slower on CPU"
    )
    save_adapters: bool = Field(False, description="keep trained adapters under <results>/adapters/")
    checkpoint_every: PositiveInt | None = Field(
        None, description="save what a run needs to continue every N optimizer steps (under "
                          "<results>/checkpoints/); `run --resume DIR` continues an interrupted run from its last one"
    )


class Suite(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: ModelConfig
    dataset: DatasetConfig
    training: TrainingConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    seeds: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="run every method run once per seed (it replaces training.seed): each "
                                        "(run, seed) is its own worker and record; the results show the mean and a "
                                        "95% interval over the seeds"
    )
    methods: list[Any] = Field(min_length=1)  # each entry is checked against its method's settings (_method_runs)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"each seed once (got {v})")
        return v


class LoadedSuite(BaseModel):
    """A validated suite with its source: what the runner and the worker use."""

    path: str
    sha256: str
    suite: Suite
    runs: list[RunPlan]

    def resolved(self) -> dict[str, Any]:
        return self.suite.model_dump(mode="json")

    def with_launch(self, launch: Launch) -> LoadedSuite:
        """The suite with `launch` (run --launcher) for every run that has no `launch` of its own, named as such."""
        if launch.processes == 1:
            return self
        runs = [r if r.settings.get("launch") else
                RunPlan(r.name + launch.suffix, r.method, {**r.settings, "launch": launch.model_dump()}, r.seed)
                for r in self.runs]
        return self.model_copy(update={"runs": runs})

    def launched(self) -> bool:
        """Whether any run spreads over several processes."""
        return any(launch_of(r).processes > 1 for r in self.runs)

    def jobs(self) -> list[RunPlan]:
        """What the runner starts, one worker each: every run, or with `seeds` every (run, seed), seeds innermost."""
        if self.suite.seeds is None:
            return list(self.runs)
        return [RunPlan(r.name, r.method, r.settings, seed) for r in self.runs for seed in self.suite.seeds]


def launch_of(plan: RunPlan) -> Launch:
    """How a run is spread over processes (one process unless its settings say otherwise)."""
    return Launch.model_validate(plan.settings.get("launch") or {})


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _problems(err: ValidationError, prefix: tuple = ()) -> list[str]:
    problems = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            problems.append(f"{_loc(loc)}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{_loc(loc)}: required key missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{_loc(loc)}: {msg}")
    return problems


def _method_runs(entries: list[dict[str, Any]]) -> tuple[list[RunPlan], list[str]]:
    known = registry.load_all()
    runs, problems = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            hint = f" (write `- method: {entry}`)" if isinstance(entry, str) else ""
            problems.append(f"methods[{i}]: expected a mapping with a 'method' key, got {entry!r}{hint}")
            continue
        name = entry.get("method")
        if not isinstance(name, str):
            problems.append(f"methods[{i}].method: required key missing")
            continue
        if name not in known:
            problems.append(f"methods[{i}].method: unknown method {name!r}{did_you_mean(name, known)}")
            continue
        method = known[name]
        try:
            settings = method.Settings.model_validate(entry)
        except ValidationError as err:
            problems.extend(_problems(err, ("methods", i)))
            continue
        if settings.enabled:
            suffix = (settings.launch.suffix if settings.launch else "") + ("-trl" if settings.trainer == "trl" else "")
            runs.extend(RunPlan(r.name + suffix, r.method, r.settings, r.seed) for r in method.expand(settings))
            if not method.traits.gradient_checkpointing and settings.gradient_checkpointing:
                problems.append(f"methods[{i}] ({name}): does not work with gradient checkpointing")
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            problems.append(f"methods: run name {run.name!r} appears twice")
        seen.add(run.name)
    return runs, problems


def _cross_checks(suite: Suite) -> list[str]:
    """Checks that span sections and need no model, data or torch."""
    from .builtin_tasks import TASKS

    problems = []
    ds, t = suite.dataset, suite.training
    if ds.builtin is not None:
        if ds.builtin not in TASKS:
            problems.append(f"dataset.builtin: unknown built-in dataset {ds.builtin!r}"
                            f"{did_you_mean(ds.builtin, TASKS)}")
        elif TASKS[ds.builtin].kind != suite.model.task:
            problems.append(f"dataset.builtin: {ds.builtin!r} is a {TASKS[ds.builtin].kind} task, "
                            f"model.task is {suite.model.task}")
    if suite.seeds is not None and "seed" in t.model_fields_set:
        problems.append("training.seed: give training.seed or seeds, not both (seeds replaces training.seed)")
    untimed = max(t.warmup_timing_steps, t.memory_profile_steps)
    if t.steps is not None and t.steps <= untimed:
        problems.append(f"training.steps: must exceed warmup_timing_steps and memory_profile_steps ({untimed}), "
                        "the steps left out of train_s")
    if t.precision == "fp16-mixed" and t.device == "cpu":
        problems.append("training.precision: fp16-mixed needs CUDA, but training.device is cpu")
    for i, entry in enumerate(suite.methods):
        if isinstance(entry, dict) and entry.get("trainer") == "trl":
            problems += [f"methods[{i}] (trainer: trl): {why}" for why in trl_refusals(suite, entry)]
    if suite.runner.checkpoint_every:
        for i, entry in enumerate(suite.methods):
            method = registry.load_all().get(entry.get("method")) if isinstance(entry, dict) else None
            if method and not method.traits.resumable:
                problems.append(f"methods[{i}] ({method.name}): cannot continue from a checkpoint "
                                "(runner.checkpoint_every): part of its training state lives outside its tensors")
    if t.gradient_checkpointing:
        for i, entry in enumerate(suite.methods):
            method = registry.load_all().get(entry.get("method")) if isinstance(entry, dict) else None
            if method and not method.traits.gradient_checkpointing and entry.get("gradient_checkpointing") is None:
                problems.append(f"methods[{i}] ({method.name}): does not work with gradient checkpointing, which "
                                "training.gradient_checkpointing turns on; set gradient_checkpointing: false in "
                                "this entry")
    return problems


def trl_refusals(suite: Suite, entry: dict[str, Any]) -> list[str]:
    """Why a method entry cannot train through TRL's SFTTrainer (trl_loop.py), if it cannot."""
    from .methods.base import Method

    method = registry.load_all().get(entry.get("method"))
    why = []
    if suite.model.task != "causal_lm":
        why.append(f"SFTTrainer trains causal language models; model.task is {suite.model.task}")
    if method is not None and type(method).after_optimizer_step is not Method.after_optimizer_step:
        why.append(f"{method.name} needs a call after every optimizer step, which SFTTrainer's loop does not make")
    if entry.get("launch") or suite.runner.checkpoint_every:
        why.append("not with launch or runner.checkpoint_every yet (TRL has its own distribution and checkpoints)")
    return why


def parse_suite(data: Any, path: str = "<suite>") -> tuple[Suite, list[RunPlan]]:
    """Validate a suite mapping; raise SuiteError with every problem at once."""
    if not isinstance(data, dict):
        raise SuiteError(path, ["expected a mapping at the top level"])
    problems: list[str] = []
    suite = None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems(err))
    entries = data.get("methods")
    runs: list[RunPlan] = []
    if isinstance(entries, list):
        runs, method_problems = _method_runs(entries)
        problems.extend(method_problems)
        if suite is not None and not runs and not method_problems:
            problems.append("methods: every entry is disabled")
    if suite is not None:
        problems.extend(_cross_checks(suite))
    if problems:
        raise SuiteError(path, problems)
    assert suite is not None
    return suite, runs


class DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: YAML lets the later one win
    silently, which hides a typo or a half-edited file."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                   f"{seen[key]}); YAML would keep the later value silently")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_suite(path: str | Path) -> LoadedSuite:
    """Read a suite file with yaml.safe_load and validate it."""
    p = Path(path)
    if not p.is_file():
        raise SuiteError(str(path), ["file not found"])
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SuiteError(str(path), [f"not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); save the "
                                     "file as UTF-8"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses duplicate keys
    except DuplicateKey as err:
        raise SuiteError(str(path), [str(err)]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SuiteError(str(path), [f"invalid YAML{where}: {problem}"]) from None
    suite, runs = parse_suite(data, str(path))
    return LoadedSuite(path=str(path), sha256=hashlib.sha256(raw).hexdigest(), suite=suite, runs=runs)
