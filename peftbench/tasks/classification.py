"""Sequence classification: a text and an integer label per row; a new classification head on the base model;
accuracy and macro F1 on the held-out rows."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..errors import PeftbenchError
from . import register
from .base import EvalData, Evaluation, TaskKind, require_values, rows_text, slices


def _where(rows: list[dict[str, Any]]) -> str:
    numbers = sorted(r["row"] for r in rows if "row" in r)
    return rows_text(numbers) if numbers else f"{len(rows)} rows"


def _name(rows, labels: set[int]) -> str:
    names = rows.label_names
    return ", ".join(repr(names[i]) if names and i < len(names) else str(i) for i in sorted(labels))


@register
class Classification(TaskKind):
    name = "classification"
    summary = "sequence classification: text -> integer label (accuracy, macro F1)"
    peft_task_type = "SEQ_CLS"
    head = "classifier"
    generates = False
    row_fields = ("text", "label")  # and `row`: its number in the source file, for messages

    def normalise(self, rows, cfg, source):
        """Text and label of every row; labels are whole numbers (class indices) or text (class names, mapped to
        indices in `finalise`), never a mix. Each row keeps its number in the source (`row`) for messages."""
        require_values(rows, (cfg.text_column, cfg.label_column), source)
        out, kinds = [], {}
        for i, r in enumerate(rows, 1):
            label = r[cfg.label_column]
            if isinstance(label, bool) or (isinstance(label, float) and label.is_integer()):
                label = int(label)
            elif isinstance(label, float):
                raise PeftbenchError(f"dataset {source}: row {i}, column {cfg.label_column!r}: label {label} is not a "
                                     "whole number (class labels are 0, 1, ... or class names)")
            elif isinstance(label, str):
                label = label.strip()
            elif not isinstance(label, int):
                raise PeftbenchError(f"dataset {source}: row {i}, column {cfg.label_column!r}: label {label!r} is "
                                     "neither a class index nor a class name")
            kinds.setdefault(type(label), i)
            out.append({"text": str(r[cfg.text_column]), "label": label, "row": i})
        if len(kinds) > 1:
            raise PeftbenchError(f"dataset {source}: column {cfg.label_column!r} mixes class indices (row "
                                 f"{kinds[int]}) and class names (row {kinds[str]}); use one or the other")
        return out

    def finalise(self, rows, source):
        """The classes: text labels map to indices in sorted order (or in `label_names` order when the suite gives
        them); integer labels must lie in 0 .. num_labels - 1 (num_labels, when the suite does not fix it, is the
        largest label + 1). The training rows must hold two classes at least."""
        every = rows.train + rows.eval
        if every and isinstance(every[0]["label"], str):
            names = rows.label_names or sorted({r["label"] for r in every})
            unknown = [r for r in every if r["label"] not in names]
            if unknown:
                raise PeftbenchError(f"dataset {source}: label {unknown[0]['label']!r} ({_where(unknown)}) is not one "
                                     f"of label_names {names}")
            if rows.num_labels is not None and rows.num_labels != len(names):
                raise PeftbenchError(f"dataset {source}: {len(names)} classes ({', '.join(names)}) but "
                                     f"model.num_labels is {rows.num_labels}")
            index = {name: i for i, name in enumerate(names)}
            for r in every:
                r["label"] = index[r["label"]]
            if not rows.label_names:
                rows.notes.append(f"{source}: class names mapped to indices in sorted order: "
                                  + ", ".join(f"{i} = {name!r}" for i, name in enumerate(names)))
            rows.label_names, rows.num_labels = names, len(names)
        else:
            negative = [r for r in every if r["label"] < 0]
            if negative:
                raise PeftbenchError(f"dataset {source}: label {negative[0]['label']} ({_where(negative)}) is "
                                     "negative; class indices start at 0")
            n = rows.num_labels or (len(rows.label_names) if rows.label_names else None)
            top = max((r["label"] for r in every), default=0)
            if n is not None and top >= n:
                over = [r for r in every if r["label"] >= n]
                raise PeftbenchError(f"dataset {source}: label {top} ({_where(over)}) is out of range for "
                                     f"{n} classes (labels 0 to {n - 1}); fix the data or model.num_labels")
            rows.num_labels = n if n is not None else top + 1
        trained = {r["label"] for r in rows.train}
        if len(trained) < 2:
            raise PeftbenchError(f"dataset {source}: the training rows hold one class only ({_name(rows, trained)}); "
                                 "a classifier needs at least two")
        unseen = sorted({r["label"] for r in rows.eval} - trained)
        if unseen:
            rows.notes.append(f"{source}: class(es) {_name(rows, set(unseen))} appear in the evaluation rows only")

    def text(self, row):
        return row["text"]

    def auto_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self, cfg):
        kwargs = {"num_labels": cfg.num_labels} if cfg.num_labels else {}
        if cfg.label_names:  # saved with the model's config: a merged or fully fine-tuned model names its classes
            kwargs["id2label"] = dict(enumerate(cfg.label_names))
            kwargs["label2id"] = {name: i for i, name in enumerate(cfg.label_names)}
        return kwargs

    def unquantized_modules(self):
        return ["classifier", "pooler", "score"]

    def encode(self, rows, tokenizer, max_length):
        import torch

        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length, padding="max_length",
                        return_tensors="pt")
        enc = dict(enc)
        enc["labels"] = torch.tensor([r["label"] for r in rows])
        return enc

    def evaluate(self, model, ctx, data: EvalData, batch_size, tokenizer, max_new_tokens) -> Evaluation:
        import torch.nn.functional as F

        model.eval()
        loss_sum, preds, labels, row_loss = 0.0, [], [], []
        with ctx.inference():
            for batch in slices(data.encoded, batch_size):
                batch = ctx.to_device(batch)
                with ctx.autocast():
                    out = model(**batch)
                logits = out.logits.float()
                preds += logits.argmax(-1).tolist()
                labels += batch["labels"].tolist()
                row_loss += F.cross_entropy(logits, batch["labels"], reduction="none").tolist()
                loss_sum += float(out.loss) * len(batch["labels"])
        scores = {"loss": loss_sum / max(len(labels), 1), "accuracy": metrics.accuracy(preds, labels),
                  "f1": metrics.macro_f1(preds, labels)}
        return Evaluation(scores, {"pred": preds, "label": labels, "loss": row_loss})

    def score_rows(self, per_row, rows):
        pick = [per_row["pred"][i] for i in rows], [per_row["label"][i] for i in rows]
        return {"loss": sum(per_row["loss"][i] for i in rows) / len(rows), "accuracy": metrics.accuracy(*pick),
                "f1": metrics.macro_f1(*pick)}
