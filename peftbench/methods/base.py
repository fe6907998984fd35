"""What a fine-tuning method is to peftbench: everything the rest of the project needs to know about it.

A method module declares its settings, traits and family, how it is loaded and applied (peft), its memory
footprint, what the recommender may propose, the command-line options it maps, the settings its parameter counts
are tested with, and how it saves and merges. Nothing outside the module names a method: the suite schema,
`peftbench methods`, the estimator, the recommender, merge, the worker and the parametrized tests read these.

No torch/peft import at module level (the registry is read by the CLI without torch); `prepare`, `load_kwargs`,
`merge` and `save` run in the worker and import what they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from ..launch import Launch

if TYPE_CHECKING:  # only for annotations: the worker passes real objects
    from ..arch import Arch, Footprint
    from ..context import RunContext

# What kind of change a method makes; the recommender's rules are written per family.
Family = Literal["full", "low-rank", "orthogonal", "scaling", "soft-prompt", "selective", "adapter"]
FAMILIES: tuple[str, ...] = get_args(Family)


class MethodSettings(BaseModel):
    """Settings every suite method entry may carry; a method subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="registered method name")
    learning_rate: PositiveFloat | None = Field(None, description="overrides training.learning_rate for this method")
    gradient_checkpointing: bool | None = Field(
        None, description="overrides training.gradient_checkpointing for this method (e.g. prefix tuning cannot use it)"
    )
    enabled: bool = Field(True, description="false keeps the entry in the file but runs nothing")
    launch: Launch | None = Field(None, description="this run across several processes (processes, strategy: ddp "
                                                    "or fsdp); default: run --launcher's, else one process")
    trainer: Literal["harness", "trl"] = Field(
        "harness", description="the training loop: peftbench's own, or TRL's SFTTrainer (causal_lm; run name "
                               "<run>-trl; pip install \"peftbench[trl]\")")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        from ..suite import refuse_booleans

        return refuse_booleans(cls, data)


@dataclass(frozen=True)
class Traits:
    mergeable: bool  # can be folded into the base weights (zero inference overhead after merge)
    quantized_base: bool  # base weights are loaded quantized
    extra_positions: str = ""  # how it lengthens sequences, e.g. "+n virtual tokens", "" when it does not
    needs_cuda: bool = False
    gradient_checkpointing: bool = True  # works with gradient checkpointing (peft's prefix tuning does not)
    resumable: bool = True  # its training state is its tensors and optimizer (checkpoint.py); AdaLoRA's is not


@dataclass(frozen=True)
class Advice:
    """What the recommender (peftbench/recommend.py) takes from a method: the settings worth proposing, the prior
    score its rules start from (0: can match full fine-tuning; below 0: expected to trail it), why, and a
    starting learning rate for GPU runs of 1-70B models."""

    prior: float
    why: str  # one line, with its source
    learning_rate: float
    candidates: tuple[dict[str, Any], ...] = ({},)  # settings (without `method`) to consider
    proxy: str | None = None  # a method whose measured score stands for this one's when it was not measured


@dataclass(frozen=True)
class RunPlan:
    """One run of a method: its unique name (starts with the method's name) and resolved settings; in a suite with
    `seeds`, one repeat of it (the seed that replaces training.seed)."""

    name: str
    method: str
    settings: dict[str, Any]
    seed: int | None = None

    @property
    def key(self) -> str:
        """What names the run's record, log and adapter: the run's name, with @s<seed> for one of several seeds."""
        return self.name if self.seed is None else f"{self.name}@s{self.seed}"


def target_list(value: str) -> list[str] | str:
    """A --targets value: 'all-linear', or comma-separated module names."""
    return value if value == "all-linear" else [t.strip() for t in value.split(",") if t.strip()]


# --rank, --alpha, --targets and --virtual-tokens of `peftbench estimate`, as most methods map them
LOW_RANK_OPTIONS = {"rank": ("ranks", lambda v: [v]), "alpha": ("alpha", float),
                    "targets": ("target_modules", target_list)}
TARGETS_OPTION = {"targets": ("target_modules", target_list)}
VIRTUAL_TOKENS_OPTION = {"virtual_tokens": ("num_virtual_tokens", int)}


class Method:
    name: ClassVar[str]
    summary: ClassVar[str]
    traits: ClassVar[Traits]
    family: ClassVar[Family]
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    default_learning_rate: ClassVar[float]
    advice: ClassVar[Advice | None] = None  # None: the recommender never proposes this method
    # The peft_type of the adapters it saves (adapter_config.json), so `peftbench merge` knows them; None: no adapter.
    peft_type: ClassVar[str | None] = None
    # Command-line option of `peftbench estimate` -> (settings field, conversion of the option's value).
    options: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]] = {}
    # Settings (without `method`) whose analytic parameter count the tests check against peft on every test
    # architecture (tests/integration/test_counts.py): one per distinct code path of `footprint`.
    test_settings: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def expand(self, settings: MethodSettings) -> list[RunPlan]:
        """The runs one suite entry stands for. Default: one run named after the method."""
        return [RunPlan(self.name, self.name, settings.model_dump())]

    def load_kwargs(self, settings: MethodSettings, ctx: RunContext) -> dict[str, Any]:
        """Extra keyword arguments for `from_pretrained` (e.g. a quantization config)."""
        return {}

    def prepare(self, model: Any, settings: MethodSettings, ctx: RunContext) -> Any:
        """Return the model to train: the base model wrapped by peft, or the base itself for full fine-tuning."""
        raise NotImplementedError

    def after_optimizer_step(self, model: Any, step: int) -> None:
        """Called after every optimizer step, before the gradients are cleared (AdaLoRA allocates its rank budget
        here). Default: nothing."""

    def gradient_checkpointing(self, settings: MethodSettings, suite_gc: bool) -> bool:
        """The entry's own gradient_checkpointing if set, else the suite's."""
        return settings.gradient_checkpointing if settings.gradient_checkpointing is not None else suite_gc

    def learning_rate(self, settings: MethodSettings, suite_lr: float | None) -> float:
        """The entry's own rate, else the suite's training.learning_rate, else this method's default."""
        if settings.learning_rate is not None:
            return settings.learning_rate
        return suite_lr if suite_lr is not None else self.default_learning_rate

    def footprint(self, arch: Arch, settings: MethodSettings) -> Footprint:
        """What this method trains, adds and saves on `arch`, for the memory model (peftbench/estimate.py)."""
        from ..errors import PeftbenchError

        raise PeftbenchError(f"method {self.name!r} has no memory model yet")

    def counting_settings(self, settings: MethodSettings) -> MethodSettings:
        """Settings to apply on a meta-device model for exact parameter counts (no weights, no tokenizer)."""
        return settings

    def rank(self, settings: MethodSettings) -> int | None:
        """The rank of a low-rank update (the recommender's rank rules), None for methods without one."""
        return None

    def settings_from_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """A suite entry for this method from command-line options (None: not given); an option the method does
        not map is an error."""
        from ..errors import PeftbenchError

        entry: dict[str, Any] = {"method": self.name}
        for opt, value in options.items():
            if value is None:
                continue
            if opt not in self.options:
                raise PeftbenchError(f"--{opt.replace('_', '-')} does not apply to method {self.name}")
            field, convert = self.options[opt]
            entry[field] = convert(value)
        return entry

    def unmergeable_reason(self) -> str | None:
        """Why the trained model has nothing to merge, or None when `merge` applies."""
        if self.traits.mergeable:
            return None
        return f"{self.name}: not mergeable; {self.traits.extra_positions or 'extra modules'} at inference"

    def merge(self, model: Any) -> tuple[Any, str]:
        """The trained model with its adapter folded into the base weights (peft's merge_and_unload), and a note
        on what merging changed ('' when it is exact)."""
        note = "merged into the quantized base weights: re-quantization changes the outputs" \
            if self.traits.quantized_base else ""
        return model.merge_and_unload(), note

    def save(self, model: Any, out: Path) -> tuple[float, str]:
        """Save what the run trained into `out`: (size in MB = 10^6 bytes, what the size counts)."""
        from ..measure import directory_size_mb

        model.save_pretrained(out)
        return directory_size_mb(out), "save_pretrained files"

    def describe_settings(self) -> str:
        """One line listing this method's own settings, for `peftbench methods`."""
        own = [k for k in self.Settings.model_fields if k not in MethodSettings.model_fields]
        return ", ".join(own) if own else "-"


def classifier_copy(arch: Arch) -> int:
    """peft trains a copy of a classification head (modules_to_save) for SEQ_CLS; language-model heads have none."""
    if arch.head != "classifier":
        return 0
    return sum(m.params for m in arch.heads_out if m.path == arch.output_layer)
