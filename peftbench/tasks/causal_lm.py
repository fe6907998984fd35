"""Causal language modelling: a prompt and a target per row; the loss covers the target (and eos) only;
perplexity over the target tokens and exact match and ROUGE-L of greedy generations on the held-out rows."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..errors import PeftbenchError
from . import register
from .base import EvalData, Evaluation, TaskKind, require_values, slices


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _bos(tokenizer: Any) -> list[int]:
    return [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []


def split_ids(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) of the joined text prompt + target, split where the target's characters begin.

    Tokenized apart, a SentencePiece tokenizer (Llama's) starts the target with a word-start piece ("▁The") that
    never follows a newline in the joined text, so the model would learn, and be scored on, tokens it never sees
    in use. Joined, the split follows the offsets (a zero-width token at the boundary goes with the target), so
    the prompt ids are a prefix of the joined ids, and generation starts where training's target does. A tokenizer
    without offsets (a slow one), or a joined text whose one token spans the boundary (the prompt's last
    characters and the target's first), falls back to tokenizing the two apart."""
    if not getattr(tokenizer, "is_fast", False):
        return _ids(tokenizer, prompt), _ids(tokenizer, target)
    enc = tokenizer(prompt + target, add_special_tokens=False, return_offsets_mapping=True)
    offsets, n = enc["offset_mapping"], len(prompt)
    cut = next((i for i, (start, end) in enumerate(offsets) if start >= n or end > n), len(offsets))
    if cut < len(offsets) and offsets[cut][0] < n:  # one token holds the prompt's end and the target's start:
        return _ids(tokenizer, prompt), _ids(tokenizer, target)  # no clean split, so tokenize them apart
    return enc["input_ids"][:cut], enc["input_ids"][cut:]


def reference_text(tokenizer: Any, prompt: str, target: str) -> str:
    """A target as the tokenizer would print it back after its prompt (normalises case and spacing as generations
    are)."""
    return " ".join(tokenizer.decode(split_ids(tokenizer, prompt, target)[1], skip_special_tokens=True).split())


@register
class CausalLM(TaskKind):
    name = "causal_lm"
    summary = "causal LM: prompt -> target text (perplexity; exact match and ROUGE-L of greedy generation)"
    peft_task_type = "CAUSAL_LM"
    head = "lm"
    generates = True
    row_fields = ("prompt", "target")  # and `row`: its number in the source file, for messages

    def _prompt(self, row: dict[str, Any], cfg, source: str) -> str:
        try:
            return cfg.prompt_template.format_map({k: "" if v is None else v for k, v in row.items()})
        except (KeyError, IndexError, ValueError) as err:
            raise PeftbenchError(f"dataset {source}: prompt_template refers to {err} which the rows lack") from None

    def normalise(self, rows, cfg, source):
        """Every row needs a target; the prompt's columns may be empty (an instruction without input is common)."""
        require_values(rows, (cfg.target_column,), source)
        return [{"prompt": self._prompt(r, cfg, source), "target": str(r[cfg.target_column]), "row": i}
                for i, r in enumerate(rows, 1)]

    def fit(self, rows, tokenizer, max_length):
        """Rows whose prompt leaves room for at least one target token within max_length: the others would train
        on nothing (and a batch of them gives a NaN loss)."""
        bos = _bos(tokenizer)
        return [r for r in rows if len(bos + split_ids(tokenizer, r["prompt"], r["target"])[0]) < max_length]

    def from_builtin(self, rows, cfg):
        return [{"prompt": cfg.prompt_template.format_map(r), "target": r[cfg.target_column]} for r in rows]

    def text(self, row):
        return row["prompt"] + " " + row["target"]

    def auto_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def encode(self, rows, tokenizer, max_length):
        """prompt + target + eos (the joined text's tokens, split_ids), right-padded to max_length; the labels mask
        everything but target and eos."""
        import torch

        pad, eos, bos = tokenizer.pad_token_id, tokenizer.eos_token_id, _bos(tokenizer)
        ids, labels, mask = [], [], []
        for r in rows:
            p, t = split_ids(tokenizer, r["prompt"], r["target"])
            p, t = bos + p, t + [eos]
            seq, lab = (p + t)[:max_length], ([-100] * len(p) + t)[:max_length]
            n = len(seq)
            ids.append(seq + [pad] * (max_length - n))
            labels.append(lab + [-100] * (max_length - n))
            mask.append([1] * n + [0] * (max_length - n))
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}

    def prompts(self, rows, tokenizer, max_length) -> dict[str, Any]:
        """Left-padded prompts for batched greedy generation: the prompt part of the joined tokens (split_ids)."""
        import torch

        bos = _bos(tokenizer)
        seqs = [(bos + split_ids(tokenizer, r["prompt"], r["target"])[0])[-max_length:] for r in rows]
        width = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([[pad] * (width - len(s)) + s for s in seqs]),
            "attention_mask": torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs]),
        }

    def eval_data(self, rows, tokenizer, max_length):
        return EvalData(self.encode(rows, tokenizer, max_length), self.prompts(rows, tokenizer, max_length),
                        [reference_text(tokenizer, r["prompt"], r["target"]) for r in rows])

    def evaluate(self, model, ctx, data: EvalData, batch_size, tokenizer, max_new_tokens) -> Evaluation:
        import torch.nn.functional as F

        model.eval()
        loss_sum, weight, generated, row_sum, row_tokens = 0.0, 0, [], [], []
        with ctx.inference():
            for batch in slices(data.encoded, batch_size):
                batch = ctx.to_device(batch)
                with ctx.autocast():
                    out = model(**batch)
                targets = batch["labels"][:, 1:]
                n = int((targets != -100).sum())  # the loss is a mean over predicted target tokens
                loss_sum += float(out.loss) * n
                weight += n
                # what predicts each target token, for the per-row losses (prompt tuning puts its virtual tokens
                # before the sequence: the last positions are the sequence's own)
                logits = out.logits[:, -batch["labels"].shape[1]:][:, :-1].float()
                token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
                row_sum += token_loss.sum(1).tolist()
                row_tokens += (targets != -100).sum(1).tolist()
            for batch in slices(data.prompts, batch_size):
                batch = ctx.to_device(batch)
                with ctx.autocast():
                    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                new = out[:, batch["input_ids"].shape[1]:]
                generated += [" ".join(t.split()) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        loss = loss_sum / max(weight, 1)
        rouge = metrics.rouge_l(generated, data.references)
        scores = {"loss": loss, "perplexity": metrics.perplexity(loss),
                  "exact_match": metrics.exact_match(generated, data.references),
                  "rouge_l": sum(rouge) / max(len(rouge), 1)}
        return Evaluation(scores, {"loss_sum": row_sum, "tokens": row_tokens,
                                   "match": metrics.matches(generated, data.references), "rouge_l": rouge})

    def score_rows(self, per_row, rows):
        loss = sum(per_row["loss_sum"][i] for i in rows) / max(sum(per_row["tokens"][i] for i in rows), 1)
        scores = {"loss": loss, "perplexity": metrics.perplexity(loss)}
        for name, key in (("exact_match", "match"), ("rouge_l", "rouge_l")):  # records before ROUGE-L lack it
            if key in per_row:
                scores[name] = sum(per_row[key][i] for i in rows) / len(rows)
        return scores
