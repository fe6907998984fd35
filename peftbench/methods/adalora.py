"""AdaLoRA (Zhang et al. 2023) via peft: an SVD-shaped update dW = P diag(E) Q * alpha / ranknum per wrapped linear
(lora_B: d_out x r, lora_E: r, lora_A: r x d_in), started at `init_rank` and pruned during training to an average
of `target_rank` by a cubic budget schedule driven by the triplets' sensitivity. Mergeable.

The schedule is in peft's steps: `tinit` warm-up steps at the full budget, a budgeting phase, and `tfinal` steps at
the final budget; total_step is the run's optimizer steps (WorkerContext.total_steps). Ranks are pruned by masking
entries of E (peft RankAllocator), so the parameter count stays that of `init_rank` throughout training; saving
keeps the surviving triplets only. peft's AdaLoraModel.forward adds an orthogonality penalty on A and B to the loss
whenever the model returns one (the worker always passes labels); see `_regularise_only_in_training`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from ..arch import Footprint, Saved
from . import register
from .base import Method, MethodSettings, Traits, classifier_copy, target_list


class AdaLoraSettings(MethodSettings):
    init_rank: PositiveInt = Field(12, description="init_r: rank of every update before pruning")
    target_rank: PositiveInt = Field(8, description="target_r: average rank after pruning (below init_rank)")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (e.g. q,v)"
    )
    alpha: PositiveFloat | None = Field(None, description="lora_alpha (scaling alpha / current rank); default peft's 8")
    dropout: NonNegativeFloat = Field(0.0, le=1.0, description="lora_dropout")
    # peft's MetaMathQA comparison: tinit=200, tfinal=500 of total_step=5000, deltaT=1
    tinit: float = Field(0.04, ge=0.0, lt=1.0, description="warm-up at the full budget, a fraction of the run's steps")
    tfinal: float = Field(0.1, ge=0.0, lt=1.0, description="final phase at the target budget, a fraction of the steps")
    delta_t: PositiveInt = Field(1, description="deltaT: steps between budget allocations")

    @model_validator(mode="after")
    def _schedule(self):
        if self.target_rank >= self.init_rank:
            raise ValueError("target_rank must be below init_rank (AdaLoRA prunes from init_rank to target_rank)")
        if self.tinit + self.tfinal >= 1:
            raise ValueError("tinit + tfinal must leave a budgeting phase (sum below 1)")
        return self


def schedule(settings: AdaLoraSettings, total_steps: int) -> tuple[int, int, int]:
    """(total_step, tinit, tfinal) in steps for a run of `total_steps` optimizer steps.

    peft requires tinit < total_step - tfinal; the fractions' floors keep that (their sum is below 1). The step
    total_step - tfinal forces the final mask from the sensitivities gathered so far, so at least one step must come
    before it: tfinal is capped at total_step - 2 (a 1-step run never allocates; see `after_optimizer_step`)."""
    total = max(1, int(total_steps))
    tinit = int(settings.tinit * total)
    tfinal = min(int(settings.tfinal * total), max(total - 2 - tinit, 0))
    return total, tinit, tfinal


def default_targets(model_type: str) -> list[str] | None:
    """None where peft has an AdaLoRA default for the model type; else peft's LoRA default (peft 0.21's AdaLoRA table
    lacks mistral and phi, whose AdaLoRA runs would otherwise fail)."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as ADALORA,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA,
    )

    if model_type in ADALORA or model_type not in LORA:
        return None
    return list(LORA[model_type])


def _regularise_only_in_training(tuner) -> None:
    """peft's AdaLoraModel.forward adds orth_reg_weight x the mean |AA^T - I|, |B^TB - I| to every returned loss, in
    evaluation too. At initialisation (A, B ~ N(0, 0.02^2)) that adds about 1.5 nats to a MiniLM loss, so the
    evaluation and base losses would not be the task's. Keep peft's forward (and the penalty) in training mode and
    use the wrapped model's plain forward in eval mode."""
    regularised = tuner.forward

    def forward(*args, **kwargs):
        if tuner.training:
            return regularised(*args, **kwargs)
        return tuner.model.forward(*args, **kwargs)

    tuner.forward = forward


def _freeze_ranknum(model) -> None:
    """peft 0.21 upcasts 16-bit adapter tensors to fp32 after injection (tuners_utils.cast_adapter_dtype) by storing
    `param.to(float32)` back into the ParameterDict, which wraps it in a new nn.Parameter with requires_grad=True: on
    a bf16 or fp16 base, AdaLoRA's frozen `ranknum` (the current rank the update is divided by) becomes trainable,
    the optimizer moves it, and every wrapped linear counts one more trainable parameter. Freeze it again."""
    for name, p in model.named_parameters():
        if ".ranknum." in name:
            p.requires_grad_(False)


@register
class AdaLora(Method):
    name = "adalora"
    summary = "AdaLoRA: SVD-shaped LoRA with an adaptive rank budget"
    # resumable: no, its rank allocator keeps importance averages outside the model and the optimizer (checkpoint.py
    # saves those two)
    traits = Traits(mergeable=True, quantized_base=False, resumable=False)
    family = "low-rank"
    peft_type = "ADALORA"
    # --rank is the budget it prunes to; the update starts at init_rank
    options = {"rank": ("target_rank", int), "targets": ("target_modules", target_list)}
    Settings = AdaLoraSettings
    test_settings = (
        {},
        {"init_rank": 6, "target_rank": 2, "target_modules": "all-linear"},
        {"init_rank": 16, "target_rank": 4, "target_modules": ["q_proj", "o_proj", "down_proj"]},
    )
    # E starts at zero and A, B at std 0.02 (peft reset_lora_parameters): updates start smaller than LoRA's
    default_learning_rate = 1e-3

    def rank(self, settings):
        return settings.target_rank

    def footprint(self, arch, settings):
        """Right after `prepare`, before any pruning: r (d_in + d_out + 1) trainable per wrapped linear (lora_A,
        lora_B, lora_E) plus one frozen `ranknum` parameter each (counted as added, not trainable).

        Saved per wrapped block linear (peft adalora/layer.py SVDLinear.forward: dropout(x) @ (A*E)^T @ B^T): the
        input cast to fp32 (with dropout, the dropped copy and its mask) and the r fp32 outputs lora_B multiplies,
        as for LoRA. peft's RankAllocator also keeps three fp32 tensors the size of every adapter weight (ipt,
        exp_avg_ipt, exp_avg_unc) from the first allocation on: `extra_state`, counted with the optimizer state."""
        r = settings.init_rank
        wrapped = arch.targets(settings.target_modules, arch.lora_defaults)
        trainable = frozen = 0
        saved: list[Saved] = []
        for m in wrapped:
            copies = arch.layers if arch.in_block(m) else 1
            trainable += r * (m.d_in + m.d_out + 1) * copies
            frozen += copies
            if arch.in_block(m):
                saved += [Saved(m.d_in, "fp32"), Saved(r, "fp32")]
                saved += [Saved(m.d_in, "mask")] if settings.dropout else []
        head = classifier_copy(arch)
        largest = max([r * max(m.d_in, m.d_out) for m in wrapped] + [head], default=0)
        return Footprint(trainable=trainable + head, added=trainable + frozen + head, saved=tuple(saved),
                         largest_trainable=largest, extra_state=3 * trainable)

    def prepare(self, model, settings, ctx):
        from peft import AdaLoraConfig, get_peft_model

        total, tinit, tfinal = schedule(settings, ctx.total_steps)
        targets = settings.target_modules
        if targets is None:
            targets = default_targets(getattr(model.config, "model_type", ""))
        extra = {"lora_alpha": settings.alpha} if settings.alpha is not None else {}
        config = AdaLoraConfig(
            task_type=ctx.peft_task_type,
            init_r=settings.init_rank,
            target_r=settings.target_rank,
            target_modules=targets,
            lora_dropout=settings.dropout,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=settings.delta_t,
            total_step=total,
            **extra,
        )
        peft_model = get_peft_model(model, config)
        _freeze_ranknum(peft_model)
        _regularise_only_in_training(peft_model.base_model)
        return peft_model

    def after_optimizer_step(self, model, step):
        """peft's budget allocation (AdaLoraModel.update_and_allocate): after optimizer.step(), with the gradients
        still there for the sensitivities. A run shorter than two steps has no sensitivities before the final mask
        (peft would fail on them) and nothing to allocate."""
        tuner = model.base_model
        if tuner.peft_config[tuner.trainable_adapter_name].total_step < 2:
            return
        tuner.update_and_allocate(step)
