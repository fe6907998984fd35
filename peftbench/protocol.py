"""The runner <-> worker contract: what a worker is given (a WorkerSpec, as a JSON file) and what it says while
it runs (progress lines on its stdout). No torch import: both sides use it.

The spec is validated where it is written and where it is read, so a worker never runs a half-understood job.
A worker's stdout lines that start with PROGRESS_PREFIX carry one JSON event each ({"event": "phase" | "step" |
"done", ...}); every other line is the worker's own output and goes to its log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .methods.base import RunPlan
from .suite import Suite

PROGRESS_PREFIX = "@@peftbench "


class WorkerSpec(BaseModel):
    """One method run, as the worker receives it."""

    model_config = ConfigDict(extra="forbid")

    suite: Suite  # the resolved suite
    run: RunPlan  # the run's name, method and resolved settings
    suite_dir: str | None = None  # where the suite's relative paths start
    adapter_dir: str | None = None  # where to keep the trained adapter (runner.save_adapters), else nowhere
    checkpoint_path: str | None = None  # runner.checkpoint_every: the run's checkpoint file (resumed from if present)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def read(cls, path: Path) -> WorkerSpec:
        return cls.model_validate_json(Path(path).read_text())

    def suite_dict(self) -> dict[str, Any]:
        """The resolved suite as plain JSON data (what the estimator reads)."""
        return self.suite.model_dump(mode="json")


def progress_line(event: str, **fields: Any) -> str:
    return PROGRESS_PREFIX + json.dumps({"event": event, **fields})


def parse_progress(line: str) -> dict[str, Any] | None:
    """The event of a progress line, or None for any other line (or a garbled one)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        return json.loads(line[len(PROGRESS_PREFIX):])
    except json.JSONDecodeError:
        return None
