"""Datasets: built-in generated tasks, local JSONL/JSON/CSV/Parquet files, and hub datasets, normalised to rows.

Rows are plain dicts: classification {"text": str, "label": int}; causal_lm {"prompt": str, "target": str}.
Row loading imports no torch (the parent checks local data before it starts any worker); the tokenising
functions at the bottom run in the worker and import torch lazily.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .builtin_tasks import TASKS
from .errors import PeftbenchError, did_you_mean
from .suite import DatasetConfig

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_BUILTIN_TRAIN = 1000


def builtin_task(name: str):
    if name not in TASKS:
        raise PeftbenchError(f"unknown built-in dataset {name!r}{did_you_mean(name, TASKS)}; known: {', '.join(TASKS)}")
    return TASKS[name]


def check_source(cfg: DatasetConfig, task: str, suite_dir: Path | None = None) -> None:
    """Cheap checks of the dataset source the parent can make before any worker starts."""
    if cfg.builtin:
        spec = builtin_task(cfg.builtin)
        if spec.kind != task:
            raise PeftbenchError(f"built-in dataset {cfg.builtin!r} is a {spec.kind} task, the model's task is {task}")
    elif cfg.path:
        path = resolve_path(cfg.path, suite_dir)
        if path.suffix not in LOCAL_FORMATS:
            raise PeftbenchError(f"dataset file {cfg.path}: unsupported format (use {', '.join(LOCAL_FORMATS)})")
        if not path.is_file():
            raise PeftbenchError(f"dataset file not found: {path}")


def resolve_path(path: str, suite_dir: Path | None) -> Path:
    """A relative dataset path is taken from the current directory, else from the suite file's directory."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and suite_dir is not None and (suite_dir / p).exists():
        return suite_dir / p
    return p


def _raw_rows(cfg: DatasetConfig, split: str, suite_dir: Path | None) -> list[dict[str, Any]]:
    import datasets  # heavy import, only when a file or hub dataset is read

    datasets.disable_progress_bars()
    try:
        if cfg.path:
            path = resolve_path(cfg.path, suite_dir)
            ds = datasets.load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
        else:
            ds = datasets.load_dataset(cfg.hub, cfg.hub_config, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        source = cfg.path or cfg.hub
        raise PeftbenchError(f"cannot load dataset {source!r} (split {split!r}): {str(err).splitlines()[0]}") from None
    return [dict(r) for r in ds]


def _normalise(rows: list[dict[str, Any]], cfg: DatasetConfig, task: str, source: str) -> list[dict[str, Any]]:
    if not rows:
        raise PeftbenchError(f"dataset {source} has no rows")
    cols = set(rows[0])
    if task == "classification":
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in cols]
        if missing:
            raise PeftbenchError(f"dataset {source} lacks column(s) {', '.join(missing)} (has {', '.join(sorted(cols))})")
        try:
            return [{"text": str(r[cfg.text_column]), "label": int(r[cfg.label_column])} for r in rows]
        except (TypeError, ValueError):
            raise PeftbenchError(f"dataset {source}: column {cfg.label_column!r} must hold integer labels") from None
    if cfg.target_column not in cols:
        raise PeftbenchError(f"dataset {source} lacks column {cfg.target_column!r} (has {', '.join(sorted(cols))})")
    out = []
    for r in rows:
        try:
            prompt = cfg.prompt_template.format_map({k: "" if v is None else v for k, v in r.items()})
        except (KeyError, IndexError, ValueError) as err:
            raise PeftbenchError(f"dataset {source}: prompt_template refers to {err} which the rows lack") from None
        out.append({"prompt": prompt, "target": str(r[cfg.target_column])})
    return out


def load_rows(cfg: DatasetConfig, task: str, suite_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows. Without eval_split, eval_examples rows are held out of a seeded shuffle of train."""
    check_source(cfg, task, suite_dir)
    if cfg.builtin:
        spec = builtin_task(cfg.builtin)
        n_train = cfg.train_examples or DEFAULT_BUILTIN_TRAIN
        rows = spec.generate(n_train + cfg.eval_examples, cfg.seed)
        if task == "causal_lm":
            rows = [{"prompt": cfg.prompt_template.format_map(r), "target": r[cfg.target_column]} for r in rows]
        train, evals = rows[:n_train], rows[n_train:]
        return train, evals
    source = cfg.path or cfg.hub
    train = _normalise(_raw_rows(cfg, cfg.train_split, suite_dir), cfg, task, source)
    if cfg.eval_split:
        evals = _normalise(_raw_rows(cfg, cfg.eval_split, suite_dir), cfg, task, source)[: cfg.eval_examples]
    else:
        random.Random(cfg.seed).shuffle(train)
        if len(train) < 2:
            raise PeftbenchError(f"dataset {source} needs at least 2 rows to hold out an evaluation set")
        n_eval = min(cfg.eval_examples, len(train) // 2)
        train, evals = train[n_eval:], train[:n_eval]
    if cfg.train_examples:
        train = train[: cfg.train_examples]
    return train, evals


# ---- worker side: tokenisation -------------------------------------------------------------------------------


def encode_classification(rows: list[dict], tokenizer: Any, max_length: int) -> dict:
    """Padded to max_length so every batch has the same shape (fair timing, repeatable memory)."""
    import torch

    enc = tokenizer(
        [r["text"] for r in rows], truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
    )
    enc = dict(enc)
    enc["labels"] = torch.tensor([r["label"] for r in rows])
    return enc


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_causal(rows: list[dict], tokenizer: Any, max_length: int) -> dict:
    """prompt + target + eos, right-padded to max_length; the loss covers target and eos only."""
    import torch

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    ids, labels, mask = [], [], []
    for r in rows:
        p, t = bos + _ids(tokenizer, r["prompt"]), _ids(tokenizer, r["target"]) + [eos]
        seq, lab = (p + t)[:max_length], ([-100] * len(p) + t)[:max_length]
        n = len(seq)
        ids.append(seq + [pad] * (max_length - n))
        labels.append(lab + [-100] * (max_length - n))
        mask.append([1] * n + [0] * (max_length - n))
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def encode_prompts(rows: list[dict], tokenizer: Any, max_length: int) -> dict:
    """Left-padded prompts for batched greedy generation."""
    import torch

    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    seqs = [(bos + _ids(tokenizer, r["prompt"]))[-max_length:] for r in rows]
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([[pad] * (width - len(s)) + s for s in seqs]),
        "attention_mask": torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs]),
    }


def reference_text(tokenizer: Any, text: str) -> str:
    """A target as the tokenizer would print it back (normalises case/spacing the same way as generations)."""
    return " ".join(tokenizer.decode(_ids(tokenizer, text), skip_special_tokens=True).split())
