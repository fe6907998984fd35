"""Tests for peftbench.builtin_tasks (pure stdlib, no torch)."""

import dataclasses
import random

import pytest

from peftbench import builtin_tasks as bt
from peftbench.builtin_tasks import TASKS, TaskSpec, sentiment_negation, split_rows, word_copy, word_reverse

GENERATORS = [sentiment_negation, word_copy, word_reverse]


@pytest.mark.parametrize("gen", GENERATORS)
def test_deterministic(gen):
    assert gen(300, 7) == gen(300, 7)
    assert gen(0, 7) == []


@pytest.mark.parametrize("gen", GENERATORS)
def test_does_not_touch_or_depend_on_global_random(gen):
    random.seed(123)
    state = random.getstate()
    a = gen(100, 1)
    assert random.getstate() == state
    random.seed(999)
    assert gen(100, 1) == a


@pytest.mark.parametrize("gen", GENERATORS)
def test_different_seeds_give_different_data(gen):
    assert gen(100, 0) != gen(100, 1)


@pytest.mark.parametrize("gen", GENERATORS)
def test_exact_size(gen):
    for n in (1, 2, 17, 250):
        assert len(gen(n, 3)) == n


def test_sentiment_schema():
    rows = sentiment_negation(400, 0)
    for r in rows:
        assert set(r) == {"text", "label"}
        assert isinstance(r["text"], str) and r["text"].strip() == r["text"] and r["text"]
        assert r["text"] == r["text"].lower()
        assert type(r["label"]) is int and r["label"] in (0, 1)
        assert len(r["text"].split()) <= 25


@pytest.mark.parametrize("n", [600, 1000, 2000])
def test_sentiment_unique_texts(n):
    texts = [r["text"] for r in sentiment_negation(n, 0)]
    assert len(set(texts)) == n


@pytest.mark.parametrize("n", [1, 2, 99, 100, 601])
def test_sentiment_balanced(n):
    rows = sentiment_negation(n, 5)
    pos = sum(r["label"] for r in rows)
    assert abs(pos - (n - pos)) <= 1
    if n % 2 == 0:
        assert pos == n // 2


def test_sentiment_mixes_template_families():
    texts = [r["text"] for r in sentiment_negation(600, 0)]
    joined = "\n".join(texts)
    for marker in (" not ", ", but ", "although ", "however,", "never"):
        assert marker in joined, marker
    # Plain statements are present too (no negator, no contrast).
    plain = [t for t in texts if not any(w in t.split() for w in ("not", "never", "but", "although"))]
    assert len(plain) > 100


def test_sentiment_labelling_rules_on_known_forms():
    # Spot-check documented rules on rows whose form is easy to recognise.
    pos, neg = set(bt._POS_ADJ), set(bt._NEG_ADJ)
    for r in sentiment_negation(2000, 11):
        words = r["text"].split()
        if len(words) == 4 and words[0] == "the" and words[2] in ("was", "is", "seemed", "felt"):
            assert r["label"] == (1 if words[3] in pos else 0), r  # "the food was good"
        if r["text"].startswith("i would never call the ") and words[-1] in pos | neg:
            assert r["label"] == (0 if words[-1] in pos else 1), r  # negation flips
        if ", but the " in r["text"] and " not " not in r["text"] and "any" not in r["text"]:
            last = r["text"].split(", but the ")[1].split()[-1]
            if last in pos | neg and len(r["text"].split(", but the ")[1].split()) <= 4:
                assert r["label"] == (1 if last in pos else 0), r  # clause after "but" decides


def test_word_copy_schema():
    rows = word_copy(300, 0)
    vocab = set(bt._COPY_WORDS)
    for r in rows:
        assert set(r) == {"input", "output", "source"}
        assert r["source"] == "builtin:word-copy"
        assert r["input"] == "copy: " + r["output"]
        words = r["output"].split(" ")
        assert 2 <= len(words) <= 5
        assert set(words) <= vocab
        assert all(w.isalpha() and w.islower() for w in words)
    assert len({r["input"] for r in rows}) == len(rows)


def test_split_rows():
    rows = sentiment_negation(60, 0)
    train, ev = split_rows(rows, 40, 20)
    assert train == rows[:40] and ev == rows[40:]
    assert not {r["text"] for r in train} & {r["text"] for r in ev}
    train, ev = split_rows(rows, 10, 5)
    assert len(train) == 10 and len(ev) == 5
    with pytest.raises(ValueError):
        split_rows(rows, 50, 20)


def test_invalid_n():
    for gen in GENERATORS:
        with pytest.raises(ValueError):
            gen(-1, 0)


def test_task_registry():
    assert set(TASKS) == {"sentiment-negation", "word-copy", "word-reverse"}
    for name, spec in TASKS.items():
        assert isinstance(spec, TaskSpec)
        assert spec.name == name
        assert spec.kind in ("classification", "causal_lm")
        assert isinstance(spec.description, str) and "\n" not in spec.description
        assert spec.generate(10, 0) == spec.generate(10, 0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "x"  # type: ignore[misc]
    assert TASKS["sentiment-negation"].kind == "classification"
    assert TASKS["sentiment-negation"].num_labels == 2
    assert TASKS["sentiment-negation"].generate is sentiment_negation
    assert TASKS["word-copy"].kind == "causal_lm"
    assert TASKS["word-copy"].num_labels is None
    assert TASKS["word-copy"].generate is word_copy


def test_no_heavy_imports():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(bt))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"torch", "numpy", "transformers", "datasets", "peft"}


def test_word_reverse_reverses_the_words_of_word_copy():
    copy, rev = word_copy(200, 3), word_reverse(200, 3)
    for c, r in zip(copy, rev, strict=True):
        assert r["input"] == "reverse: " + c["output"]  # the same words, drawn from the same seed
        assert r["output"].split() == c["output"].split()[::-1]
        assert r["source"] == "builtin:word-reverse"
