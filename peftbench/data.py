"""Datasets: built-in generated tasks, local JSONL/JSON/CSV/Parquet files, and hub datasets, split into training
and evaluation rows. No torch import (the parent checks local data before it starts any worker).

Rows are plain dicts in the task kind's fields (classification {"text", "label"}, causal LM {"prompt", "target"}):
the task kind normalises them (peftbench/tasks/) and, in the worker, encodes them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from . import tasks
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


def _normalise(kind, rows: list[dict[str, Any]], cfg: DatasetConfig, source: str) -> list[dict[str, Any]]:
    if not rows:
        raise PeftbenchError(f"dataset {source} has no rows")
    return kind.normalise(rows, cfg, source)


def load_rows(cfg: DatasetConfig, task: str, suite_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows. Without eval_split, eval_examples rows are held out of a seeded shuffle of train."""
    check_source(cfg, task, suite_dir)
    kind = tasks.get(task)
    if cfg.builtin:
        spec = builtin_task(cfg.builtin)
        n_train = cfg.train_examples or DEFAULT_BUILTIN_TRAIN
        rows = kind.from_builtin(spec.generate(n_train + cfg.eval_examples, cfg.seed), cfg)
        train, evals = rows[:n_train], rows[n_train:]
        return train, evals
    source = cfg.path or cfg.hub
    train = _normalise(kind, _raw_rows(cfg, cfg.train_split, suite_dir), cfg, source)
    if cfg.eval_split:
        evals = _normalise(kind, _raw_rows(cfg, cfg.eval_split, suite_dir), cfg, source)[: cfg.eval_examples]
    else:
        random.Random(cfg.seed).shuffle(train)
        if len(train) < 2:
            raise PeftbenchError(f"dataset {source} needs at least 2 rows to hold out an evaluation set")
        n_eval = min(cfg.eval_examples, len(train) // 2)
        train, evals = train[n_eval:], train[:n_eval]
    if cfg.train_examples:
        train = train[: cfg.train_examples]
    return train, evals
