"""The method registry (no torch)."""

from __future__ import annotations

import pytest

from peftbench import methods
from peftbench.errors import PeftbenchError
from peftbench.methods.base import Method, MethodSettings


def test_the_six_methods_are_registered():
    assert set(methods.load_all()) >= {"full", "lora", "qlora", "prefix", "prompt", "ia3"}


@pytest.mark.parametrize("name", sorted(methods.load_all()))
def test_each_method_is_complete(name):
    m = methods.get(name)
    assert isinstance(m, Method) and m.name == name
    assert m.summary and m.default_learning_rate > 0
    assert issubclass(m.Settings, MethodSettings)
    runs = m.expand(m.Settings(method=name))
    assert runs and all(r.name.startswith(name) and r.method == name for r in runs)


def test_traits():
    all_ = methods.load_all()
    assert all_["qlora"].traits.quantized_base and not all_["lora"].traits.quantized_base
    assert not all_["prefix"].traits.mergeable and all_["prefix"].traits.extra_positions
    assert all_["prompt"].traits.extra_positions and all_["lora"].traits.mergeable


def test_unknown_method_suggests():
    with pytest.raises(PeftbenchError, match="did you mean 'prefix'"):
        methods.get("prefx")


def test_learning_rate_precedence():
    lora = methods.get("lora")
    assert lora.learning_rate(lora.Settings(method="lora"), None) == lora.default_learning_rate
    assert lora.learning_rate(lora.Settings(method="lora"), 0.1) == 0.1
    assert lora.learning_rate(lora.Settings(method="lora", learning_rate=0.2), 0.1) == 0.2


def test_method_settings_reject_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        methods.get("ia3").Settings(method="ia3", rank=4)
