"""LoKr (Yeh et al. 2024, LyCORIS) via peft: the weight update is a Kronecker product dW = (W1 kron W2) * alpha / r
of a small full matrix W1 and a second factor W2, itself a rank-r product when r is small against its size. peft
factorizes d_out = a x b and d_in = c x d (`factorization`: a pair of divisors near the square root, or `factor`
and d / factor), W1 is a x c and W2 is b x d. Mergeable. Runs per rank: lokr-r4, lokr-r8, ...
"""

from __future__ import annotations

from pydantic import Field, field_validator

from . import register
from .base import LOW_RANK_OPTIONS, Method, Traits
from .loha import LycorisSettings, lycoris_footprint, lycoris_kwargs
from .lora import expand_ranks


class LokrSettings(LycorisSettings):
    decompose_both: bool = Field(False, description="also factor W1 into a rank-r product when r is small enough")
    decompose_factor: int = Field(-1, description="Kronecker factor of each dimension; -1: near its square root")

    @field_validator("decompose_factor")
    @classmethod
    def _factor(cls, v: int) -> int:
        if v != -1 and v < 1:
            raise ValueError("decompose_factor must be -1 or a positive integer")
        return v


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """peft.tuners.lokr.layer.factorization (peft 0.21, from LyCORIS), restated here because importing peft imports
    torch: (m, n) with m x n = dimension and m <= n; m = factor when it divides the dimension, else the divisor pair
    closest to the square root whose smaller member is at most `factor`."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    if m > n:
        n, m = m, n
    return m, n


def lokr_tensors(d_in: int, d_out: int, r: int, decompose_both: bool = False, factor: int = -1) -> list[int]:
    """The tensors peft's LoKrLayer.update_layer makes for nn.Linear (shape ((a, b), (c, d)), out = a b, in = c d):
    W1 is a x c unless decompose_both and r < max(a, c) / 2, then a x r and r x c; W2 is b x d unless
    r < max(b, d) / 2, then b x r and r x d."""
    c, d = factorization(d_in, factor)
    a, b = factorization(d_out, factor)
    use_w1 = not (decompose_both and r < max(a, c) / 2)
    use_w2 = not (r < max(b, d) / 2)
    w1 = [a * c] if use_w1 else [a * r, r * c]
    w2 = [b * d] if use_w2 else [b * r, r * d]
    return w1 + w2


@register
class LoKr(Method):
    name = "lokr"
    summary = "LoKr: Kronecker product of a small matrix and a low-rank factor (LyCORIS)"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "low-rank"
    peft_type = "LOKR"
    options = LOW_RANK_OPTIONS
    Settings = LokrSettings
    test_settings = (
        {"ranks": [8]},
        {"ranks": [2], "target_modules": "all-linear"},  # W2 a rank-2 product everywhere
        {"ranks": [64], "target_modules": ["q_proj", "o_proj", "down_proj"]},  # W2 full where r >= dim/2
        {"ranks": [4], "decompose_both": True, "decompose_factor": 256, "target_modules": "all-linear"},
        {"ranks": [4], "decompose_both": True, "decompose_factor": 8, "target_modules": "all-linear"},
    )
    # W1 starts at zero and its gradient scales with W2's small entries: peft's MetaMathQA comparison tunes LoKr to
    # 3e-3 (30x its base 1e-4); 1e-3 keeps the tiny CPU runs moving without overshooting
    default_learning_rate = 1e-3

    def expand(self, settings):
        return expand_ranks(self, settings)

    def rank(self, settings):
        return settings.ranks[0]

    def footprint(self, arch, settings):
        """The factors `lokr_tensors` counts per wrapped linear; saved and transient memory as in
        `lycoris_footprint`. make_kron builds kron(W1, W2) and its scaled copy in forward; backward holds dW's
        gradient, its scaled copy and the reshaped copy torch.kron's backward makes: about 3 dW-sized temporaries."""
        def per_linear(d_in, d_out, r):
            return lokr_tensors(d_in, d_out, r, settings.decompose_both, settings.decompose_factor)

        return lycoris_footprint(arch, settings, per_linear, transient_units=3)

    def prepare(self, model, settings, ctx):
        from peft import LoKrConfig, get_peft_model

        config = LoKrConfig(**lycoris_kwargs(settings, ctx), decompose_both=settings.decompose_both,
                            decompose_factor=settings.decompose_factor)
        return get_peft_model(model, config)
