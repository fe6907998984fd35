"""Dataset loading from local files and built-in tasks, normalised to rows (no torch)."""

from __future__ import annotations

import json

import pytest

from peftbench.data import load_rows
from peftbench.errors import PeftbenchError
from peftbench.suite import DatasetConfig


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_local_jsonl_instruction_rows_for_causal_lm(tmp_path):
    rows = [{"input": f"say {i}", "output": str(i), "source": "test"} for i in range(10)]
    cfg = DatasetConfig(path=str(write_jsonl(tmp_path / "d.jsonl", rows)), eval_examples=3, seed=1)
    train, evals = load_rows(cfg, "causal_lm")
    assert len(train) == 7 and len(evals) == 3
    assert all(r["prompt"] == f"say {r['target']}\n" for r in train + evals)
    assert {r["target"] for r in train + evals} == {str(i) for i in range(10)}  # held out, not duplicated


def test_local_csv_classification_with_column_mapping(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,y\n" + "".join(f"text {i},{i % 2}\n" for i in range(8)))
    cfg = DatasetConfig(path=str(path), text_column="sentence", label_column="y", eval_examples=2, train_examples=4)
    train, evals = load_rows(cfg, "classification")
    assert len(train) == 4 and len(evals) == 2
    assert all(set(r) == {"text", "label"} and r["label"] in (0, 1) for r in train + evals)


def test_local_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": [f"t{i}" for i in range(6)], "label": [0, 1] * 3}).to_parquet(path)
    train, evals = load_rows(DatasetConfig(path=str(path), eval_examples=2), "classification")
    assert len(train) == 4 and len(evals) == 2


def test_missing_column_is_a_user_error(tmp_path):
    cfg = DatasetConfig(path=str(write_jsonl(tmp_path / "d.jsonl", [{"question": "a", "answer": "b"}] * 4)))
    with pytest.raises(PeftbenchError, match="lacks column 'output'"):
        load_rows(cfg, "causal_lm")


def test_missing_file_and_unsupported_format(tmp_path):
    with pytest.raises(PeftbenchError, match="dataset file not found"):
        load_rows(DatasetConfig(path=str(tmp_path / "none.jsonl")), "classification")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(PeftbenchError, match="unsupported format"):
        load_rows(DatasetConfig(path=str(tmp_path / "d.txt")), "classification")


def test_builtin_rows_are_deterministic_and_split():
    cfg = DatasetConfig(builtin="sentiment-negation", train_examples=50, eval_examples=20)
    a, b = load_rows(cfg, "classification"), load_rows(cfg, "classification")
    assert a == b and len(a[0]) == 50 and len(a[1]) == 20
    assert not {r["text"] for r in a[0]} & {r["text"] for r in a[1]}
