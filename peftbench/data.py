"""Datasets: built-in generated tasks, local JSONL/JSON/CSV/Parquet files, and hub datasets, split into training
and evaluation rows. No torch import (the parent checks local data before it starts any worker).

Rows are plain dicts in the task kind's fields (classification {"text", "label"}, causal LM {"prompt", "target"}):
the task kind normalises them (peftbench/tasks/) and, in the worker, encodes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
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


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file, read here rather than by `datasets` so that a broken line is named by number and
    an empty cell stays None (an absent key too), never a string."""
    import json

    rows = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise PeftbenchError(f"dataset file {path} line {number}: not valid JSON ({err.msg}); "
                                         "a truncated line?") from None
                if not isinstance(row, dict):
                    raise PeftbenchError(f"dataset file {path} line {number}: a JSONL row must be an object")
                rows.append(row)
        except UnicodeDecodeError as err:
            raise PeftbenchError(f"dataset file {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return rows


def _raw_rows(cfg: DatasetConfig, split: str, suite_dir: Path | None) -> list[dict[str, Any]]:
    source = cfg.path or cfg.hub
    if cfg.path:
        path = resolve_path(cfg.path, suite_dir)
        if path.stat().st_size == 0:
            raise PeftbenchError(f"dataset file {path} is empty")
        if path.suffix == ".jsonl":
            return _json_lines(path)
    import datasets  # heavy import, only when a file or hub dataset is read

    datasets.disable_progress_bars()
    try:
        if cfg.path:
            ds = datasets.load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
        else:
            ds = datasets.load_dataset(cfg.hub, cfg.hub_config, split=split)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; the user needs the cause, in one line
        raise PeftbenchError(f"cannot load dataset {source!r} (split {split!r}): {_cause(err)}") from None
    return [dict(r) for r in ds]


def _cause(err: BaseException) -> str:
    """The most telling line of a datasets error: it wraps the reader's own error (DatasetGenerationError), and
    a missing split reads 'Instruction "x" corresponds to no data!'."""
    while err.__cause__ is not None or err.__context__ is not None:
        inner = err.__cause__ or err.__context__
        if not str(inner).strip():
            break
        err = inner
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if "corresponds to no data" in text:
        return "no such split in the dataset"
    if "is not cached" in text:  # datasets' words for "offline, or the hub unreachable, and no local copy"
        return ("no local copy, and the hub is not reachable from here (or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is "
                "set); use `path:` with a local file instead")
    return f"{type(err).__name__}: {text}"[:300]


@dataclass
class Rows:
    """A dataset as a run uses it: its rows, the decisions made about them, and (classification) its classes."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # what the user should know: rows held out, dropped, ...
    num_labels: int | None = None
    label_names: list[str] | None = None


def _normalise(kind, rows: list[dict[str, Any]], cfg: DatasetConfig, source: str) -> list[dict[str, Any]]:
    if not rows:
        raise PeftbenchError(f"dataset {source} has no rows")
    return kind.normalise(rows, cfg, source)


def load_rows(cfg: DatasetConfig, task: str, suite_dir: Path | None = None, num_labels: int | None = None,
              label_names: list[str] | None = None) -> Rows:
    """Training and evaluation rows, checked. Without eval_split, eval_examples rows are held out of a seeded
    shuffle of the training split. Classification: `num_labels` and `label_names` (the suite's, when it fixes
    them) are checked against the labels, or derived from them."""
    check_source(cfg, task, suite_dir)
    kind = tasks.get(task)
    notes: list[str] = []
    if cfg.builtin:
        spec = builtin_task(cfg.builtin)
        n_train = cfg.train_examples or DEFAULT_BUILTIN_TRAIN
        rows = kind.from_builtin(spec.generate(n_train + cfg.eval_examples, cfg.seed), cfg)
        train, evals, source = rows[:n_train], rows[n_train:], f"built-in {cfg.builtin}"
    else:
        source = str(resolve_path(cfg.path, suite_dir)) if cfg.path else cfg.hub
        train = _normalise(kind, _raw_rows(cfg, cfg.train_split, suite_dir), cfg, source)
        if cfg.eval_split:
            evals = _normalise(kind, _raw_rows(cfg, cfg.eval_split, suite_dir), cfg, source)[: cfg.eval_examples]
        else:
            random.Random(cfg.seed).shuffle(train)
            if len(train) < 2:
                raise PeftbenchError(f"dataset {source} has {len(train)} row: it needs at least 2 to hold out an "
                                     "evaluation set (or give eval_split)")
            n_eval = min(cfg.eval_examples, len(train) // 2)
            if n_eval < cfg.eval_examples:
                notes.append(f"{source} has {len(train)} rows: {n_eval} held out for evaluation (eval_examples "
                             f"asks for {cfg.eval_examples}), {len(train) - n_eval} for training")
            train, evals = train[n_eval:], train[:n_eval]
        if cfg.train_examples and len(train) < cfg.train_examples:
            notes.append(f"{source}: {len(train)} training rows, fewer than train_examples {cfg.train_examples}")
        if cfg.train_examples:
            train = train[: cfg.train_examples]
    rows = Rows(train, evals, notes, num_labels, label_names)
    kind.finalise(rows, source)
    return rows
