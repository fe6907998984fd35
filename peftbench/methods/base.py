"""What a fine-tuning method is to peftbench: settings, traits, run expansion, loading and applying.

No torch/peft import at module level (the registry is read by the CLI without torch); `prepare` and
`load_kwargs` run in the worker and import what they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

if TYPE_CHECKING:  # only for annotations: the worker passes real objects
    from ..arch import Arch, Footprint
    from ..worker import WorkerContext


class MethodSettings(BaseModel):
    """Settings every suite method entry may carry; a method subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="registered method name")
    learning_rate: PositiveFloat | None = Field(None, description="overrides training.learning_rate for this method")
    gradient_checkpointing: bool | None = Field(
        None, description="overrides training.gradient_checkpointing for this method (e.g. prefix tuning cannot use it)"
    )
    enabled: bool = Field(True, description="false keeps the entry in the file but runs nothing")


@dataclass(frozen=True)
class Traits:
    mergeable: bool  # can be folded into the base weights (zero inference overhead after merge)
    quantized_base: bool  # base weights are loaded quantized
    extra_positions: str = ""  # how it lengthens sequences, e.g. "+n virtual tokens", "" when it does not
    needs_cuda: bool = False
    gradient_checkpointing: bool = True  # works with gradient checkpointing (peft's prefix tuning does not)


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
    """One run of a method: its unique name (starts with the method's name) and resolved settings."""

    name: str
    method: str
    settings: dict[str, Any]


class Method:
    name: ClassVar[str]
    summary: ClassVar[str]
    traits: ClassVar[Traits]
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    default_learning_rate: ClassVar[float]
    advice: ClassVar[Advice | None] = None  # None: the recommender never proposes this method

    def expand(self, settings: MethodSettings) -> list[RunPlan]:
        """The runs one suite entry stands for. Default: one run named after the method."""
        return [RunPlan(self.name, self.name, settings.model_dump())]

    def load_kwargs(self, settings: MethodSettings, ctx: WorkerContext) -> dict[str, Any]:
        """Extra keyword arguments for `from_pretrained` (e.g. a quantization config)."""
        return {}

    def prepare(self, model: Any, settings: MethodSettings, ctx: WorkerContext) -> Any:
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

    def describe_settings(self) -> str:
        """One line listing this method's own settings, for `peftbench methods`."""
        own = [k for k in self.Settings.model_fields if k not in MethodSettings.model_fields]
        return ", ".join(own) if own else "-"


def classifier_copy(arch: Arch) -> int:
    """peft trains a copy of a classification head (modules_to_save) for SEQ_CLS; causal LMs have none."""
    if arch.task != "classification":
        return 0
    return sum(m.params for m in arch.heads_out if m.path == arch.output_layer)
