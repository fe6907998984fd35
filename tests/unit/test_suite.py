"""The suite schema (no torch)."""

from __future__ import annotations

import pytest

from peftbench.errors import SuiteError
from peftbench.suite import load_suite, parse_suite

from ..conftest import REPO, write_suite


def test_shipped_suites_validate():
    suites = sorted((REPO / "suites").glob("*.yaml"))
    assert {p.name for p in suites} >= {"smoke.yaml", "tiny-causal.yaml", "7b.yaml"}
    for path in suites:
        loaded = load_suite(path)
        assert loaded.runs, path


def test_smoke_suite_has_all_six_methods_and_two_lora_ranks():
    loaded = load_suite(REPO / "suites" / "smoke.yaml")
    methods = {r.method for r in loaded.runs}
    assert methods == {"full", "lora", "qlora", "prefix", "prompt", "ia3"}
    assert len([r for r in loaded.runs if r.method == "lora"]) >= 2
    assert loaded.suite.model.name == "builtin:minilm"


def test_7b_suite_runs():
    loaded = load_suite(REPO / "suites" / "7b.yaml")
    names = [r.name for r in loaded.runs]
    assert names == ["full", "lora-r4", "lora-r8", "lora-r16", "lora-r64", "qlora-r16", "prefix", "prompt", "ia3"]
    assert loaded.suite.model.name == "meta-llama/Llama-2-7b-hf"
    assert loaded.suite.training.device == "cuda"
    runs = {r.name: r for r in loaded.runs}  # like with like: QLoRA differs from LoRA by its 4-bit base alone
    assert runs["qlora-r16"].settings["target_modules"] == runs["lora-r16"].settings["target_modules"]


def test_lora_ranks_expand_into_named_runs(tiny_cls):
    tiny_cls["methods"] = [{"method": "lora", "ranks": [4, 8, 16, 64], "alpha": 32}, {"method": "qlora", "ranks": [8]}]
    _, runs = parse_suite(tiny_cls)
    assert [r.name for r in runs] == ["lora-r4", "lora-r8", "lora-r16", "lora-r64", "qlora-r8"]
    assert all(r.name.startswith(r.method) for r in runs)
    assert [r.settings["ranks"] for r in runs] == [[4], [8], [16], [64], [8]]
    assert {r.settings["alpha"] for r in runs[:4]} == {32}


def test_all_problems_reported_at_once_with_key_paths(tiny_cls):
    tiny_cls["model"]["colour"] = "red"
    tiny_cls["training"]["batch_size"] = "many"
    tiny_cls["latency"]["repeats"] = 0
    tiny_cls["methods"] = [{"method": "lora", "ranks": [4], "rnak": 8}, {"method": "lorra"}, {"ranks": [2]}]
    with pytest.raises(SuiteError) as info:
        parse_suite(tiny_cls, "s.yaml")
    problems = info.value.problems
    text = str(info.value)
    assert text.startswith("s.yaml: 6 problems")
    assert "model.colour: unknown key" in problems
    assert any(p.startswith("training.batch_size:") for p in problems)
    assert any(p.startswith("latency.repeats:") for p in problems)
    assert "methods[0].rnak: unknown key" in problems
    assert "methods[1].method: unknown method 'lorra' (did you mean 'lora'?)" in problems
    assert "methods[2].method: required key missing" in problems


def test_missing_sections_and_sources(tiny_cls):
    del tiny_cls["training"]
    tiny_cls["dataset"] = {"builtin": "sentiment-negation", "path": "x.jsonl"}
    with pytest.raises(SuiteError) as info:
        parse_suite(tiny_cls)
    assert "training: required key missing" in info.value.problems
    assert any("exactly one of builtin, path, hub" in p for p in info.value.problems)


def test_cross_checks(tiny_cls):
    tiny_cls["dataset"]["builtin"] = "word-copy"  # a causal task for a classification model
    tiny_cls["training"]["precision"] = "fp16-mixed"  # needs CUDA, device is cpu
    with pytest.raises(SuiteError) as info:
        parse_suite(tiny_cls)
    assert any("is a causal_lm task" in p for p in info.value.problems)
    assert any("fp16-mixed needs CUDA" in p for p in info.value.problems)


def test_unknown_builtin_dataset_suggests(tiny_cls):
    tiny_cls["dataset"]["builtin"] = "sentiment-negaton"
    with pytest.raises(SuiteError, match="did you mean 'sentiment-negation'"):
        parse_suite(tiny_cls)


def test_duplicate_run_names(tiny_cls):
    tiny_cls["methods"] = [{"method": "lora", "ranks": [4]}, {"method": "lora", "ranks": [4, 8]}]
    with pytest.raises(SuiteError, match="run name 'lora-r4' appears twice"):
        parse_suite(tiny_cls)


def test_disabled_entries_and_prompt_init(tiny_cls):
    tiny_cls["methods"] = [{"method": "full", "enabled": False}, {"method": "prompt", "init": "text"}]
    with pytest.raises(SuiteError, match=r"methods\[1\]: init: text needs init_text"):
        parse_suite(tiny_cls)
    tiny_cls["methods"][1]["init_text"] = "classify"
    _, runs = parse_suite(tiny_cls)
    assert [r.name for r in runs] == ["prompt"]


def test_trust_remote_code_is_off_by_default(tiny_cls):
    suite, _ = parse_suite(tiny_cls)
    assert suite.model.trust_remote_code is False


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(path) in str(info.value) and "invalid YAML at line" in str(info.value)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SuiteError, match="invalid YAML"):
        load_suite(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(SuiteError, match="file not found"):
        load_suite(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SuiteError, match="expected a mapping"):
        load_suite(path)


def test_suite_hash_changes_with_content(tmp_path, tiny_cls):
    a = load_suite(write_suite(tmp_path, tiny_cls, "a.yaml"))
    tiny_cls["training"]["steps"] = 4
    b = load_suite(write_suite(tmp_path, tiny_cls, "b.yaml"))
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


def test_prefix_tuning_cannot_checkpoint(tiny_causal):
    """peft raises for prefix tuning under gradient checkpointing: the suite says so before anything runs."""
    tiny_causal["training"]["gradient_checkpointing"] = True
    tiny_causal["methods"] = [{"method": "prefix"}, {"method": "lora"}]
    with pytest.raises(SuiteError, match=r"methods\[0\] \(prefix\): does not work with gradient checkpointing.*"
                                         r"set gradient_checkpointing: false"):
        parse_suite(tiny_causal)
    tiny_causal["methods"][0]["gradient_checkpointing"] = False  # the entry's own setting wins
    suite, runs = parse_suite(tiny_causal)
    assert [r.name for r in runs] == ["prefix", "lora-r8"]
    tiny_causal["training"]["gradient_checkpointing"] = False
    tiny_causal["methods"][0]["gradient_checkpointing"] = True
    with pytest.raises(SuiteError, match="does not work with gradient checkpointing"):
        parse_suite(tiny_causal)


def test_an_entry_can_turn_checkpointing_off_in_the_estimate():
    from peftbench.estimate import estimate_run

    suite = {"model": {"name": "llama-2-7b", "task": "causal_lm"},
             "training": {"batch_size": 4, "max_length": 512, "precision": "bf16", "gradient_checkpointing": True,
                          "device": "cuda"}}
    on = estimate_run(suite, "lora", {"method": "lora"})
    off = estimate_run(suite, "lora", {"method": "lora", "gradient_checkpointing": False})
    assert off.breakdown["activations"] > 4 * on.breakdown["activations"]


# ---- nonsense that used to pass (issue 12) -------------------------------------------------------------------------


def _problems_of(path) -> list[str]:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return info.value.problems


def test_a_key_given_twice_is_an_error(tmp_path, tiny_cls):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_cls, sort_keys=False) + "training:\n  steps: 5\n")
    (problem,) = _problems_of(path)
    assert "duplicate key 'training'" in problem and "first at line" in problem


def test_true_is_not_a_number(tiny_cls):
    tiny_cls["training"]["steps"] = True
    with pytest.raises(SuiteError, match="steps: expected a number, got true"):
        parse_suite(tiny_cls)
    tiny_cls["training"]["steps"] = 3
    tiny_cls["methods"] = [{"method": "lora", "ranks": [4], "dropout": True}]
    with pytest.raises(SuiteError, match="dropout: expected a number, got true"):
        parse_suite(tiny_cls)


def test_method_names_as_a_list_are_one_problem_each_with_the_fix(tiny_cls):
    tiny_cls["methods"] = ["lora", "ia3"]
    with pytest.raises(SuiteError) as info:
        parse_suite(tiny_cls)
    assert info.value.problems == [
        "methods[0]: expected a mapping with a 'method' key, got 'lora' (write `- method: lora`)",
        "methods[1]: expected a mapping with a 'method' key, got 'ia3' (write `- method: ia3`)",
    ]


def test_a_suite_that_is_not_utf8_says_so(tmp_path, tiny_cls):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_bytes(("# caf\xe9\n" + yaml.safe_dump(tiny_cls)).encode("latin-1"))
    (problem,) = _problems_of(path)
    assert problem.startswith("not UTF-8 text (byte 0xe9")


def test_seeds_make_one_job_per_run_and_seed(tmp_path, tiny_cls):
    tiny_cls["methods"] = [{"method": "lora", "ranks": [4, 8]}, {"method": "ia3"}]
    tiny_cls["seeds"] = [3, 0, 7]
    jobs = load_suite(write_suite(tmp_path, tiny_cls)).jobs()
    assert [j.key for j in jobs] == ["lora-r4@s3", "lora-r4@s0", "lora-r4@s7", "lora-r8@s3", "lora-r8@s0",
                                     "lora-r8@s7", "ia3@s3", "ia3@s0", "ia3@s7"]
    assert {j.name for j in jobs} == {"lora-r4", "lora-r8", "ia3"}
    del tiny_cls["seeds"]
    assert [j.key for j in load_suite(write_suite(tmp_path, tiny_cls)).jobs()] == ["lora-r4", "lora-r8", "ia3"]


@pytest.mark.parametrize("seeds, message", [([], "seeds"), ([1, 1], "each seed once"), ([-1], "seeds.0")])
def test_bad_seeds(tiny_cls, seeds, message):
    tiny_cls["seeds"] = seeds
    with pytest.raises(SuiteError, match=message):
        parse_suite(tiny_cls)


def test_seeds_and_training_seed_are_not_both_given(tiny_cls):
    tiny_cls["seeds"] = [0, 1]
    tiny_cls["training"]["seed"] = 5
    with pytest.raises(SuiteError, match="give training.seed or seeds, not both"):
        parse_suite(tiny_cls)
