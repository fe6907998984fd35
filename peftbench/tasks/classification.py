"""Sequence classification: a text and an integer label per row; a new classification head on the base model;
accuracy and macro F1 on the held-out rows."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..errors import PeftbenchError
from . import register
from .base import EvalData, TaskKind, slices


@register
class Classification(TaskKind):
    name = "classification"
    summary = "sequence classification: text -> integer label (accuracy, macro F1)"
    peft_task_type = "SEQ_CLS"
    head = "classifier"
    generates = False
    metrics = ("accuracy", "f1")
    row_fields = ("text", "label")

    def normalise(self, rows, cfg, source):
        cols = set(rows[0])
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in cols]
        if missing:
            raise PeftbenchError(f"dataset {source} lacks column(s) {', '.join(missing)} "
                                 f"(has {', '.join(sorted(cols))})")
        try:
            return [{"text": str(r[cfg.text_column]), "label": int(r[cfg.label_column])} for r in rows]
        except (TypeError, ValueError):
            raise PeftbenchError(f"dataset {source}: column {cfg.label_column!r} must hold integer labels") from None

    def text(self, row):
        return row["text"]

    def auto_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self, cfg):
        return {"num_labels": cfg.num_labels}

    def unquantized_modules(self):
        return ["classifier", "pooler", "score"]

    def encode(self, rows, tokenizer, max_length):
        import torch

        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length, padding="max_length",
                        return_tensors="pt")
        enc = dict(enc)
        enc["labels"] = torch.tensor([r["label"] for r in rows])
        return enc

    def evaluate(self, model, ctx, data: EvalData, batch_size, tokenizer, max_new_tokens) -> dict[str, Any]:
        import torch

        model.eval()
        loss_sum, preds, labels = 0.0, [], []
        with torch.inference_mode():
            for batch in slices(data.encoded, batch_size):
                batch = ctx.to_device(batch)
                with ctx.autocast():
                    out = model(**batch)
                preds += out.logits.float().argmax(-1).tolist()
                labels += batch["labels"].tolist()
                loss_sum += float(out.loss) * len(batch["labels"])
        return {"loss": loss_sum / max(len(labels), 1), "accuracy": metrics.accuracy(preds, labels),
                "f1": metrics.macro_f1(preds, labels)}
