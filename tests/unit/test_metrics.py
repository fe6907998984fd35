"""Offline metrics against hand-computed values (no torch)."""

import math

import pytest

from peftbench import metrics


def test_accuracy():
    assert metrics.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5


def test_macro_f1_hand_computed():
    # class 1: tp=2 fp=1 fn=1 -> 4/6; class 0: tp=0 fp=1 fn=1 -> 0 ; mean = 1/3
    assert metrics.macro_f1([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(1 / 3)
    assert metrics.macro_f1([0, 1], [0, 1]) == 1.0


def test_perplexity_and_exact_match():
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert metrics.perplexity(1e6) == math.inf
    assert metrics.exact_match(["red  fox", "blue"], ["red fox", "green"]) == 0.5


def test_empty_inputs_raise():
    with pytest.raises(ValueError):
        metrics.accuracy([], [])


def test_rouge_l_by_hand():
    # longest common subsequence of words: cat sat on mat = 4 of 6 each way: P = R = F = 2/3
    assert metrics.rouge_l(["a cat sat on a mat"], ["the cat sat on the mat"]) == [pytest.approx(2 / 3)]
    # case and punctuation are not words (rouge-score's tokenizer); an empty answer scores 0
    assert metrics.rouge_l(["The Cat!", ""], ["the cat", "anything"]) == [1.0, 0.0]
    # partial credit where exact match gives none: "red fox" in "the red fox": P = 1, R = 2/3, F = 0.8
    assert metrics.rouge_l(["red fox"], ["the red fox"]) == [pytest.approx(0.8)]


def test_rouge_l_reads_words_in_any_script():
    # rouge-score's own tokenizer keeps [a-z0-9] only: every non-Latin answer would score 0, right or wrong
    assert metrics.rouge_l(["東京 です", "Привет мир"], ["東京 です", "привет друг"]) == [1.0, pytest.approx(0.5)]
    assert metrics.rouge_l([""], [""]) == [1.0]  # nothing to say, and nothing said


def test_causal_scores_of_rows_written_before_rouge_l():
    from peftbench import tasks

    old = {"loss_sum": [2.0, 4.0], "tokens": [2, 2], "match": [True, False]}  # no per-row ROUGE-L yet
    scores = tasks.get("causal_lm").score_rows(old, [0, 1])
    assert scores["exact_match"] == 0.5 and scores["loss"] == 1.5 and "rouge_l" not in scores
