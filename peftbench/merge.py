"""`peftbench merge`: fold a trained adapter into its base model, save a standalone model with its tokenizer, and
check that the saved model answers like the adapter model did.

Torch side (imports torch, transformers, peft); the CLI imports it on demand. peft does the merge
(`PeftModel.merge_and_unload`); this module adds what a user needs around it: finding the base and the task from
the adapter, and a verified round trip (reload the saved model, compare its logits with the adapter model's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import PeftbenchError

DTYPES = ("fp32", "bf16", "fp16")
# Relative tolerance of the check, times the largest |logit|: an exact merge in fp32 differs by rounding only;
# 16-bit weights round W + BA to 8 (bf16) or 11 (fp16) mantissa bits.
RTOL = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 5e-3}
CHECK_TEXT = "The quick brown fox jumps over the lazy dog, and then it was not good at all. " * 4


def mergeable_peft_types() -> list[str]:
    """The peft types of the registered methods that merge (their `Traits.mergeable`), in name order."""
    from . import methods

    return sorted({m.peft_type for m in methods.load_all().values() if m.peft_type and m.traits.mergeable})


@dataclass
class MergeResult:
    out: Path
    base: str
    peft_type: str
    task: str
    max_abs_diff: float
    tolerance: float
    max_abs_logit: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def read_adapter_config(adapter: Path) -> dict:
    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise PeftbenchError(f"{adapter}: no adapter_config.json (not a peft adapter directory)")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise PeftbenchError(f"{path}: not valid JSON: {err}") from None


def base_path(base: str | None, config: dict) -> str:
    """The directory or hub id of the base model: --base (built-in names resolved), else the adapter's own."""
    from . import models

    name = base or config.get("base_model_name_or_path")
    if not name:
        raise PeftbenchError("the adapter does not name its base model: give --base")
    path = models.resolve_path(name)
    if Path(path).is_dir():
        return path
    if name.startswith((".", "/", "~")):
        raise PeftbenchError(f"base model directory not found: {name}")
    models.hub_config(name, what="base model")
    return name


def check_weights(adapter: Path) -> None:
    """The adapter's weights file opens (a truncated or corrupt one is one line, not a traceback from safetensors)."""
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        if not (adapter / "adapter_model.bin").is_file():
            raise PeftbenchError(f"{adapter}: no adapter_model.safetensors (nor .bin): its weights are missing")
        return
    try:
        with safe_open(str(weights), "pt") as f:
            list(f.keys())
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types; all mean an unreadable file
        raise PeftbenchError(f"{weights}: unreadable ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                             "truncated or corrupt?") from None


def _num_labels(adapter: Path) -> int:
    """The classification head's output size, read from the adapter's saved copy of the head."""
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            for key in f.keys():
                if key.endswith(("classifier.weight", "score.weight")):  # peft saves the trained head's copy
                    return f.get_slice(key).get_shape()[0]
    return 2


def merge(adapter: Path, out: Path, base: str | None = None, dtype: str = "fp32",
          rtol: float | None = None) -> MergeResult:
    from .models import quiet_libraries

    quiet_libraries()
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from . import models, tasks
    from .suite import ModelConfig

    models.quiet_progress()

    config = read_adapter_config(adapter)
    peft_type, task = config.get("peft_type", ""), config.get("task_type") or "CAUSAL_LM"
    if peft_type not in mergeable_peft_types():
        raise PeftbenchError(f"{peft_type or 'this'} adapters cannot be merged into the base weights (peftbench "
                             f"merges {', '.join(mergeable_peft_types())}; prompt-like methods add positions at "
                             "inference instead)")
    if str(config.get("init_lora_weights", "")).startswith(("pissa", "olora")):
        raise PeftbenchError("PiSSA/OLoRA adapters are saved against their residual base (the weights minus the "
                             "initial adapter); merging them into the original base would be wrong. Convert them "
                             "with peft's path_initial_model_for_weight_conversion first")
    kind = tasks.by_peft_type(task)
    if out.exists() and any(out.iterdir()):
        raise PeftbenchError(f"{out} exists and is not empty: choose a new --out")
    path = base_path(base, config)
    check_weights(adapter)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    labels = _num_labels(adapter) if kind.head == "classifier" else None
    names_file = adapter / "label_names.json"  # written by peftbench run beside a classifier trained on class names
    names = json.loads(names_file.read_text()) if names_file.is_file() else None
    tokenizer_src = str(adapter) if (adapter / "tokenizer_config.json").is_file() else path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_src)

    def load(where: str):
        cfg = ModelConfig(name=where, task=kind.name, num_labels=labels, label_names=names)
        return models.load_model(cfg, where, tokenizer, torch_dtype, torch.device("cpu"), {})

    try:
        model = PeftModel.from_pretrained(load(path), str(adapter))
    except (RuntimeError, ValueError, KeyError) as err:  # shapes or module names that are not the base's
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise PeftbenchError(f"the adapter does not fit base model {path} (is --base the model it was trained on?): "
                             f"{first}") from None
    model.eval()
    batch = tokenizer([CHECK_TEXT, CHECK_TEXT[: len(CHECK_TEXT) // 2]], return_tensors="pt", padding=True,
                      truncation=True, max_length=48)
    with torch.inference_mode():
        before = model(**batch).logits.float()
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reloaded = load(str(out)).eval()
    with torch.inference_mode():
        after = reloaded(**batch).logits.float()
    scale = float(before.abs().max())
    return MergeResult(out=out, base=path, peft_type=peft_type, task=task,
                       max_abs_diff=float((after - before).abs().max()),
                       tolerance=(rtol if rtol is not None else RTOL[dtype]) * max(scale, 1.0), max_abs_logit=scale)
