"""One result record per method run, shared by the parent (runner) and the child (worker); the on-disk store;
CSV/JSON export. No torch import.

Layout of a results directory:
    manifest.json          provenance: versions, git commit, platform, suite hash, resolved suite, run list
    runs/<key>.json        one record per finished run, written atomically (temp file + os.replace); <key> is the
                           run's name, or <run>@s<seed> in a suite with several seeds
    logs/<key>.log         the worker's stderr and non-protocol stdout
    results.csv            one row per record (run, seed); summary.csv: one row per run, over its seeds
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .metrics import METRICS

STATUSES = ("ok", "failed", "oom", "timeout", "skipped")


@dataclass
class RunRecord:
    """Every measured quantity of one method run. Units are in the names; the definitions live in measure.py and
    docs/columns.md."""

    run: str  # the run's name, e.g. "lora-r8"
    method: str  # the registered method, e.g. "lora"
    status: str = "failed"
    error: str = ""
    # parameters (peft's counters; 4-bit weights counted as their unpacked element count)
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_pct: float | None = None
    # data: the rows the run used, and what was decided about them (docs/columns.md)
    train_rows: int | None = None
    eval_rows: int | None = None
    rows_dropped: int | None = None  # rows left out because they do not fit in training.max_length
    data_note: str = ""
    # memory over model load + training
    peak_mem_mib: float | None = None
    peak_mem_kind: str = ""
    est_peak_mib: float | None = None  # the analytic memory model's prediction of peak_mem_mib (estimate.py)
    peak_reserved_mib: float | None = None
    peak_rss_mib: float | None = None
    # a multi-process run (launch.py): each rank's peak_mem_mib (the record's is their maximum), its processes and
    # strategy, and whether every rank ended with the same weights (distributed.py; a run whose ranks differ fails)
    peak_mem_mib_ranks: list[float] | None = None
    world_size: int = 1
    strategy: str = ""  # ddp or fsdp; "" for one process
    ranks_in_sync: bool | None = None
    # training
    train_steps: int | None = None
    train_s: float | None = None
    train_tokens_per_s: float | None = None  # a multi-process run: all ranks' tokens over the slowest rank's time
    train_tokens_per_s_per_process: float | None = None  # a multi-process run: train_tokens_per_s / world_size
    train_loss_first: float | None = None
    train_loss_last: float | None = None
    # runner.checkpoint_every (checkpoint.py): the step a resumed run continued from (None: it ran from step 0), the
    # checkpoints this process wrote and their seconds (left out of train_s)
    resumed_from_step: int | None = None
    checkpoints_saved: int | None = None
    checkpoint_s: float | None = None
    # inference
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    gen_ms_per_token: float | None = None  # the whole generation over its new tokens, prefill included
    prefill_ms: float | None = None  # generating the first token: the prompt's forward pass + generate()'s setup
    decode_ms_per_token: float | None = None  # each token after the first
    adapter_size_mb: float | None = None
    adapter_size_kind: str = ""
    # the same inference after merging the adapter into the base weights (mergeable methods only)
    latency_ms_p50_merged: float | None = None
    gen_ms_per_token_merged: float | None = None
    prefill_ms_merged: float | None = None
    decode_ms_per_token_merged: float | None = None
    merge_max_abs_diff: float | None = None  # max |logits merged - logits unmerged| on the latency batch
    merge_note: str = ""  # why a run has no merged figures, or what merging changes
    latency_cv: float | None = None  # coefficient of variation of the timed latency passes (std / mean)
    # evaluation, metric name -> value (peftbench/metrics.py): `eval` after training, `base` the same model before
    # its first step; CSV columns eval_<metric>, base_<metric>
    eval: dict[str, float] = field(default_factory=dict)
    base: dict[str, float] = field(default_factory=dict)
    # what the evaluation saw row by row after training (the task kind's own fields), for the bootstrap over rows
    eval_per_row: dict[str, list] = field(default_factory=dict)
    # context
    device: str = ""
    precision: str = ""
    trainer: str = "peftbench"  # the training loop: peftbench's own (training.py), or "trl <version> SFTTrainer"
    optimizer: str = ""  # "torch AdamW", or "optimi AdamW, Kahan summation" for 16-bit trainable weights (training.py)
    seed: int | None = None
    learning_rate: float | None = None
    wall_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def score(self, metric: str, base: bool = False) -> float | None:
        return (self.base if base else self.eval).get(metric)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if "method_type" in data:  # written before 2026-12-02: `method` held the run's name
            data = {**data, "run": data["method"], "method": data["method_type"]}
        for side in ("eval", "base"):  # written before 2026-12-02: one field per metric, eval_accuracy, ...
            if side not in data:
                data = {**data, side: {m: data[f"{side}_{m}"] for m in METRICS if data.get(f"{side}_{m}") is not None}}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


NESTED = ("settings", "eval", "base", "eval_per_row")  # kept in the JSON records; the CSV flattens eval and base
_SCALARS = [f.name for f in fields(RunRecord) if f.name not in NESTED]
_AT = _SCALARS.index("device")  # the scores go where the evaluation sits in the record: before the context
# CSV columns in order: the record's scalar fields, with eval_<metric> and base_<metric> for every metric.
CSV_COLUMNS = _SCALARS[:_AT] + [f"{side}_{m}" for m in METRICS for side in ("eval", "base")] + _SCALARS[_AT:]
INT_COLUMNS = [f.name for f in fields(RunRecord) if f.type in ("int | None", "int")]


def csv_row(r: RunRecord) -> dict[str, Any]:
    """A record as one CSV row (CSV_COLUMNS)."""
    row = {k: getattr(r, k) for k in _SCALARS}
    if r.peak_mem_mib_ranks is not None:  # one cell: each rank's peak, rank 0 first
        row["peak_mem_mib_ranks"] = ";".join(f"{v:.1f}" for v in r.peak_mem_mib_ranks)
    for m in METRICS:
        row[f"eval_{m}"], row[f"base_{m}"] = r.eval.get(m), r.base.get(m)
    return row


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that a reader sees the old file or the whole new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """A results directory: manifest + one JSON record per run."""

    # what a run writes in its folder
    OWN = ("manifest.json", "results.csv", "summary.csv", "runs", "logs", "specs", "adapters")

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.logs_dir = self.root / "logs"
        self.unreadable: list[str] = []  # files `records` or `manifest` could not read, relative to the root

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def create(self, manifest: dict[str, Any]) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)

    def manifest(self) -> dict[str, Any]:
        """The manifest, or a PeftbenchError naming it when it is missing, truncated or not a JSON object."""
        from .errors import PeftbenchError

        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise PeftbenchError(f"{self.manifest_path}: not found (not a peftbench results directory)") from None
        except (OSError, ValueError) as err:
            raise PeftbenchError(f"{self.manifest_path}: unreadable ({_first_line(err)}); a truncated write?") from None
        if not isinstance(data, dict):
            raise PeftbenchError(f"{self.manifest_path}: not a manifest (a JSON object)")
        return data

    def manifest_or_none(self) -> dict[str, Any] | None:
        """The manifest, or None when there is none or it cannot be read (then named in `unreadable`)."""
        from .errors import PeftbenchError

        if not self.manifest_path.is_file():
            return None
        try:
            return self.manifest()
        except PeftbenchError:
            self.unreadable.append("manifest.json")
            return None

    def record_path(self, run_name: str) -> Path:
        return self.runs_dir / f"{run_name}.json"

    def write(self, record: RunRecord, key: str | None = None) -> None:
        """Store the record under `key` (the job's key, RunPlan.key), by default its run's name."""
        atomic_write_json(self.record_path(key or record.run), asdict(record))

    def has(self, run_name: str) -> bool:
        return self.record_path(run_name).is_file()

    def read(self, run_name: str) -> RunRecord | None:
        """The run's record, or None when its file is truncated or is not a record (then named in `unreadable`)."""
        path = self.record_path(run_name)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or "status" not in data:
                raise ValueError("not a run record")
            return RunRecord.from_dict(data)
        except (OSError, ValueError, TypeError):
            self.unreadable.append(str(path.relative_to(self.root)))
            return None

    def records(self) -> list[RunRecord]:
        """The readable records, in the suite's run order (from the manifest) and by seed within a run, then any
        others by name. A broken file hides nothing else: it is left out and named in `unreadable`."""
        manifest = self.manifest_or_none() or {}
        runs = manifest.get("runs", [])
        order = [r["name"] for r in runs if isinstance(r, dict) and "name" in r] if isinstance(runs, list) else []
        records = [r for r in (self.read(p.stem) for p in sorted(self.runs_dir.glob("*.json"))) if r is not None]

        def place(r: RunRecord) -> tuple:
            return (order.index(r.run) if r.run in order else len(order), "" if r.run in order else r.run,
                    r.seed if r.seed is not None else -1)

        return sorted(records, key=place)

    def unreadable_note(self) -> str | None:
        if not self.unreadable:
            return None
        files = ", ".join(dict.fromkeys(self.unreadable))
        return f"left out, unreadable (truncated or not a record): {files}"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def to_frame(records: list[RunRecord]):
    """A pandas DataFrame with the CSV columns, one row per run."""
    import pandas as pd  # not at module level: the worker never needs pandas

    frame = pd.DataFrame([csv_row(r) for r in records], columns=CSV_COLUMNS)
    # nullable integers, so a missing count stays empty instead of turning the column into floats
    return frame.astype({k: "Int64" for k in INT_COLUMNS})


def export_csv(records: list[RunRecord], path: str | Path) -> None:
    to_frame(records).to_csv(path, index=False)


def export_json(records: list[RunRecord], path: str | Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in records], indent=2, default=str))
