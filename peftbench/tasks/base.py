"""What a task kind is to peftbench. No torch import at module level: the registry is read by the CLI and the
runner; the methods that encode, load and evaluate run in the worker and import what they need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import PeftbenchError

if TYPE_CHECKING:  # only for annotations
    from ..context import RunContext
    from ..data import Rows
    from ..suite import DatasetConfig, ModelConfig


@dataclass
class Evaluation:
    """What an evaluation found: the scores (metric name -> value, peftbench/metrics.py) and, per evaluation row,
    what they are computed from (the task kind's own fields), so that `score_rows` can score any subset."""

    scores: dict[str, float]
    per_row: dict[str, list]


@dataclass
class EvalData:
    """A task's evaluation rows, encoded once per run: the loss batches, and for generating tasks the prompts to
    complete and their references."""

    encoded: dict[str, Any]
    prompts: dict[str, Any] | None = None
    references: list[str] | None = None


class TaskKind:
    name: ClassVar[str]
    summary: ClassVar[str]
    peft_task_type: ClassVar[str]  # peft's TaskType for get_peft_model and adapter_config.json
    # "lm": a language-model head over the vocabulary (the loss covers vocabulary logits); "classifier": a new
    # classification head, which peft trains as a copy (modules_to_save) in every method.
    head: ClassVar[Literal["lm", "classifier"]]
    generates: ClassVar[bool]  # evaluated by generation too, and timed generating (gen_ms_per_token)
    row_fields: ClassVar[tuple[str, ...]]  # the fields of a normalised row

    # ---- data (no torch) ----

    def normalise(self, rows: list[dict[str, Any]], cfg: DatasetConfig, source: str) -> list[dict[str, Any]]:
        """Rows of a file or hub dataset as this task's rows (`row_fields`); a PeftbenchError names what is wrong."""
        raise NotImplementedError

    def from_builtin(self, rows: list[dict[str, Any]], cfg: DatasetConfig) -> list[dict[str, Any]]:
        """Rows of a built-in generated dataset as this task's rows."""
        return rows

    def finalise(self, rows: Rows, source: str) -> None:
        """Checks and decisions that need the training and evaluation rows together (classification: the
        classes), made in place on `rows`; a PeftbenchError names what is wrong."""

    def fit(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        """The rows that can be learnt from within max_length tokens (worker side: it needs the tokenizer)."""
        return rows

    def text(self, row: dict[str, Any]) -> str:
        """The whole text of a row (the latency batch is cut from it)."""
        raise NotImplementedError

    # ---- model (worker side) ----

    def auto_class(self) -> Any:
        """The transformers Auto class that loads a model for this task."""
        raise NotImplementedError

    def model_kwargs(self, cfg: ModelConfig) -> dict[str, Any]:
        """Extra `from_pretrained` / `from_config` keyword arguments the task needs (e.g. num_labels)."""
        return {}

    def unquantized_modules(self) -> list[str] | None:
        """Modules bitsandbytes must leave unquantized (a new classification head stays trainable in full precision)."""
        return None

    # ---- encoding and evaluation (worker side) ----

    def encode(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> dict[str, Any]:
        """Training batches: every row padded to max_length, so every batch has the same shape."""
        raise NotImplementedError

    def eval_data(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> EvalData:
        return EvalData(self.encode(rows, tokenizer, max_length))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The scores its evaluation computes (peftbench/metrics.py declares which task kinds each applies to)."""
        from .. import metrics

        return tuple(m.name for m in metrics.for_task(self.name))

    def evaluate(self, model: Any, ctx: RunContext, data: EvalData, batch_size: int, tokenizer: Any,
                 max_new_tokens: int) -> Evaluation:
        """Every metric of this task kind on the evaluation rows, in eval mode without gradients, and the per-row
        data they come from."""
        raise NotImplementedError

    def score_rows(self, per_row: dict[str, list], rows: list[int]) -> dict[str, float]:
        """The metrics of the rows at `rows` (indices, repeats allowed) of an Evaluation's per-row data: what a
        bootstrap over the evaluation rows resamples."""
        raise NotImplementedError


def slices(enc: dict[str, Any], size: int):
    """Consecutive batches of `size` rows of an encoded dict of tensors."""
    n = len(next(iter(enc.values())))
    for i in range(0, n, size):
        yield {k: v[i : i + size] for k, v in enc.items()}


def blank(value: Any) -> bool:
    """A missing cell: absent, null (CSV and Parquet readers give None for an empty cell) or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


def rows_text(numbers: list[int]) -> str:
    """'row 4' or 'rows 4, 17, 20' (a few, then how many more): rows are counted from 1, as the file holds them."""
    head = ", ".join(map(str, numbers[:5])) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
    return f"row{'s' if len(numbers) > 1 else ''} {head}"


def require_values(rows: list[dict[str, Any]], columns: tuple[str, ...], source: str) -> None:
    """Every row has a value in every column: else one line naming the column, how many rows and which."""
    present = set().union(*rows)
    missing = [c for c in columns if c not in present]
    if missing:
        raise PeftbenchError(f"dataset {source} lacks column(s) {', '.join(map(repr, missing))} "
                             f"(has {', '.join(sorted(map(str, present)))})")
    for column in columns:
        empty = [i for i, r in enumerate(rows, 1) if blank(r.get(column))]
        if empty:
            raise PeftbenchError(f"dataset {source}: column {column!r} is empty in {len(empty)} of {len(rows)} rows "
                                 f"({rows_text(empty)}); fill or remove them")
