"""A causal-LM row is tokenized as the model sees it in use: the joined prompt + target, split by offsets, with a
SentencePiece-style tokenizer (word starts marked with "▁", as Llama's) trained here."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

ROWS = [{"prompt": "Copy the words:\nred fox\nAnswer:\n", "target": "red fox"},
        {"prompt": "Say hello.\n", "target": "Hello there, friend"}]


@pytest.fixture(scope="module")
def sp_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # a newline is a piece of its own, as Llama's byte token <0x0A> is; words start with "▁" after a space only
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [r["prompt"] + r["target"] for r in ROWS] * 20 + ["red fox hello there friend say copy the words"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def test_the_target_is_the_joined_texts_tail(sp_tokenizer):
    from peftbench.tasks.causal_lm import _ids, split_ids

    for r in ROWS:
        prompt, target = split_ids(sp_tokenizer, r["prompt"], r["target"])
        assert prompt + target == _ids(sp_tokenizer, r["prompt"] + r["target"])
        assert sp_tokenizer.decode(target).strip() == r["target"]
    # the defect it repairs: alone, the target starts with a word-start piece the joined text never has there
    r = ROWS[0]
    alone = _ids(sp_tokenizer, r["target"])
    assert alone != split_ids(sp_tokenizer, r["prompt"], r["target"])[1]
    assert sp_tokenizer.convert_ids_to_tokens(alone)[0].startswith("▁")


def test_training_labels_and_generation_prompts_follow_the_split(sp_tokenizer):
    from peftbench import tasks
    from peftbench.tasks.causal_lm import split_ids

    kind = tasks.get("causal_lm")
    enc = kind.encode(ROWS, sp_tokenizer, 48)
    gen = kind.prompts(ROWS, sp_tokenizer, 48)
    bos, eos = sp_tokenizer.bos_token_id, sp_tokenizer.eos_token_id
    for i, r in enumerate(ROWS):
        prompt, target = split_ids(sp_tokenizer, r["prompt"], r["target"])
        n = 1 + len(prompt) + len(target) + 1
        assert enc["input_ids"][i, :n].tolist() == [bos, *prompt, *target, eos]
        labels = enc["labels"][i]
        assert labels[labels != -100].tolist() == [*target, eos]  # the loss covers the target and eos only
        row_prompt = gen["input_ids"][i][gen["attention_mask"][i] == 1].tolist()
        assert row_prompt == [bos, *prompt]  # generation continues exactly where training's target starts


def test_a_token_across_the_boundary_falls_back_to_tokenizing_apart(sp_tokenizer):
    """'Answer: ' + 'red': the space that ends the prompt becomes the target's word-start piece ('▁red'), one token
    over the boundary: no clean split, so the two are tokenized apart rather than moving prompt text into the
    target."""
    from peftbench.tasks.causal_lm import _ids, split_ids

    joined = sp_tokenizer("Answer: red", add_special_tokens=False, return_offsets_mapping=True)
    assert any(start < len("Answer: ") < end for start, end in joined["offset_mapping"])
    assert split_ids(sp_tokenizer, "Answer: ", "red") == (_ids(sp_tokenizer, "Answer: "), _ids(sp_tokenizer, "red"))
