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
    rows = load_rows(cfg, "causal_lm")
    train, evals = rows.train, rows.eval
    assert len(train) == 7 and len(evals) == 3
    assert all(r["prompt"] == f"say {r['target']}\n" for r in train + evals)
    assert {r["target"] for r in train + evals} == {str(i) for i in range(10)}  # held out, not duplicated


def test_local_csv_classification_with_column_mapping(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,y\n" + "".join(f"text {i},{i % 2}\n" for i in range(8)))
    cfg = DatasetConfig(path=str(path), text_column="sentence", label_column="y", eval_examples=2, train_examples=4)
    rows = load_rows(cfg, "classification")
    train, evals = rows.train, rows.eval
    assert len(train) == 4 and len(evals) == 2
    assert all({"text", "label"} <= set(r) and r["label"] in (0, 1) for r in train + evals)
    assert rows.num_labels == 2 and rows.label_names is None


def test_local_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": [f"t{i}" for i in range(6)], "label": [0, 1] * 3}).to_parquet(path)
    rows = load_rows(DatasetConfig(path=str(path), eval_examples=2), "classification")
    assert len(rows.train) == 4 and len(rows.eval) == 2


def test_missing_column_is_a_user_error(tmp_path):
    cfg = DatasetConfig(path=str(write_jsonl(tmp_path / "d.jsonl", [{"question": "a", "answer": "b"}] * 4)))
    with pytest.raises(PeftbenchError, match="lacks column.*'output'"):
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
    assert a == b and len(a.train) == 50 and len(a.eval) == 20
    assert not {r["text"] for r in a.train} & {r["text"] for r in a.eval}


# ---- data as people really have it (issue 12): each is one clear line, or a decision the run records -----------


def write(path, text):
    path.write_text(text)
    return str(path)


def test_string_labels_map_to_sorted_indices_and_say_so(tmp_path):
    csv = "review,sentiment\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(10))
    rows = load_rows(DatasetConfig(path=write(tmp_path / "r.csv", csv), text_column="review",
                                   label_column="sentiment", eval_examples=4), "classification")
    assert rows.label_names == ["neg", "pos"] and rows.num_labels == 2
    assert all(r["label"] == (1 if r["text"].startswith("good") else 0) for r in rows.train + rows.eval)
    assert any("0 = 'neg', 1 = 'pos'" in n for n in rows.notes)


def test_three_text_classes_and_given_names(tmp_path):
    labels = ["positive", "negative", "neutral"] * 6
    lines = [json.dumps({"text": f"t{i}", "label": lab}) for i, lab in enumerate(labels)]
    path = write(tmp_path / "d.jsonl", "\n".join(lines))
    rows = load_rows(DatasetConfig(path=path, eval_examples=3), "classification")
    assert rows.label_names == ["negative", "neutral", "positive"] and rows.num_labels == 3
    given = load_rows(DatasetConfig(path=path, eval_examples=3), "classification",
                      label_names=["positive", "neutral", "negative"])
    assert given.label_names == ["positive", "neutral", "negative"] and not any("sorted" in n for n in given.notes)
    with pytest.raises(PeftbenchError, match="'neutral'.*is not one of label_names"):
        load_rows(DatasetConfig(path=path, eval_examples=3), "classification", label_names=["positive", "negative"])


@pytest.mark.parametrize(("cells", "message"), [
    ("text,label\nfine,1\n,0\nok,1\nbad,0\n", r"column 'text' is empty in 1 of 4 rows \(row 2\)"),
    ("text,label\nfine,1\nbad,\nok,1\nmeh,0\n", r"column 'label' is empty in 1 of 4 rows \(row 2\)"),
    ("text,label\na,0.7\nb,0.2\nc,1\nd,0\n", r"row 1, column 'label': label 0.7 is not a whole number"),
    ("text,label\na,1\nb,1\nc,1\nd,1\n", "the training rows hold one class only"),
    ("text,label\na,0\nb,-1\nc,1\nd,0\n", r"label -1 \(row 2\) is negative"),
])
def test_silently_wrong_classification_data_is_an_error(tmp_path, cells, message):
    with pytest.raises(PeftbenchError, match=message):
        load_rows(DatasetConfig(path=write(tmp_path / "d.csv", cells), eval_examples=1), "classification")


def test_labels_beyond_the_heads_classes_name_the_rows(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\n" + "".join(f"t{i},{i % 3}\n" for i in range(9)))
    assert load_rows(DatasetConfig(path=path, eval_examples=2), "classification").num_labels == 3  # from the data
    with pytest.raises(PeftbenchError, match=r"label 2 \(rows 3, 6, 9\) is out of range for 2 classes"):
        load_rows(DatasetConfig(path=path, eval_examples=2), "classification", num_labels=2)


def test_mixed_label_kinds_are_an_error(tmp_path):
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps({"text": "t", "label": v}) for v in [0, 1, "pos", 0]))
    with pytest.raises(PeftbenchError, match=r"mixes class indices \(row 1\) and class names \(row 3\)"):
        load_rows(DatasetConfig(path=path, eval_examples=1), "classification")


def test_a_missing_target_names_its_rows(tmp_path):
    rows = [{"input": "a", "output": "x", "source": "s"}, {"input": "b", "source": "s"},
            {"input": "c", "output": None, "source": "s"}, {"input": "d", "output": "y", "source": "s"}]
    with pytest.raises(PeftbenchError, match=r"column 'output' is empty in 2 of 4 rows \(rows 2, 3\)"):
        load_rows(DatasetConfig(path=str(write_jsonl(tmp_path / "d.jsonl", rows)), eval_examples=1), "causal_lm")


def test_an_empty_file_and_a_truncated_line(tmp_path):
    with pytest.raises(PeftbenchError, match="is empty"):
        load_rows(DatasetConfig(path=write(tmp_path / "e.jsonl", "")), "causal_lm")
    good = json.dumps({"input": "a", "output": "b"})
    with pytest.raises(PeftbenchError, match=r"line 3: not valid JSON.*truncated line"):
        load_rows(DatasetConfig(path=write(tmp_path / "t.jsonl", f"{good}\n{good}\n{good[:-5]}")), "causal_lm")
    with pytest.raises(PeftbenchError, match="is empty"):
        load_rows(DatasetConfig(path=write(tmp_path / "e.csv", "")), "classification")


def test_a_small_file_says_how_it_was_split(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(60)))
    rows = load_rows(DatasetConfig(path=path), "classification")
    assert len(rows.train) == 30 and len(rows.eval) == 30
    assert any("60 rows: 30 held out for evaluation (eval_examples asks for 200)" in n for n in rows.notes)


def test_a_non_utf8_jsonl_file_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"input": "caf\xe9", "output": "x"}\n')
    with pytest.raises(PeftbenchError, match="not UTF-8"):
        load_rows(DatasetConfig(path=str(path)), "causal_lm")
