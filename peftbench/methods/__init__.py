"""The method registry. Every module in this package registers one method with `@register`.

Adding a method is one new file here: `load_all()` imports every module of the package, so the suite schema,
`peftbench methods`, the runner, the report and the parametrized tests pick it up without edits elsewhere.
Method modules import torch/peft only inside their functions, so listing and validating never loads torch.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Method

_registry: Registry[Method] = Registry(__name__, __path__, "method")
register = _registry.register  # class decorator: `@register class Lora(Method): ...`
load_all = _registry.load_all  # name -> Method, every method module imported once
get = _registry.get  # the method called `name`, or a PeftbenchError with a 'did you mean'
