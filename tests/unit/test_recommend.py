"""The recommender (peftbench/recommend.py) and `peftbench recommend`: scenarios, consistency, JSON, errors.
No torch."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from peftbench import methods
from peftbench.recommend import MARGIN_FRACTION, RULES, Budget, Request, recommend, recommend_table
from peftbench.results import ResultStore, RunRecord

from ..conftest import assert_user_error, invoke

# (budget GiB, examples, model, task, priority) -> expected top choice (candidate label, or None for "nothing fits")
SCENARIOS = [
    ((24, 500, "llama-2-7b", "causal_lm", "quality"), "lora r8 all-linear"),  # bf16 LoRA fits; small data: low rank
    ((8, 500, "llama-2-7b", "causal_lm", "quality"), "qlora r8 all-linear"),  # 16-bit weights alone exceed 8 GiB
    ((16, 50_000, "mistral-7b", "causal_lm", "quality"), "qlora r64 all-linear"),  # r64 only fits in 4 bits
    ((80, 50_000, "llama-2-7b", "causal_lm", "quality"), "lora r64 all-linear"),  # full ties; LoRA is leaner
    ((80, 200_000, "llama-2-7b", "causal_lm", "quality"), "full"),  # large data and it fits
    ((48, 200_000, "llama-2-7b", "causal_lm", "quality"), "full"),  # fits with 8-bit AdamW
    ((24, 200_000, "llama-2-7b", "causal_lm", "quality"), "qlora r256 all-linear"),  # r256 state: 10 GiB in fp32
    ((80, 500, "llama-2-70b", "causal_lm", "quality"), "qlora r8 all-linear"),
    ((24, 500, "llama-3.1-70b", "causal_lm", "quality"), None),  # even NF4 weights exceed 24 GiB
    ((24, 5_000, "qwen2.5-0.5b", "classification", "quality"), "lora r16 all-linear"),
    ((24, 500, "llama-2-7b", "causal_lm", "memory"), "qlora r8 all-linear"),
    ((24, 500, "llama-2-7b", "causal_lm", "adapter-size"), "ia3"),
    ((80, 200_000, "llama-2-7b", "causal_lm", "speed"), "lora r256 all-linear"),  # full computes every gradient
]


@pytest.mark.parametrize(("args", "expected"), SCENARIOS,
                         ids=[f"{a[2]}-{a[0]}GiB-{a[1]}ex-{a[4]}" for a, _ in SCENARIOS])
def test_scenarios(args, expected):
    gpu, examples, model, task, priority = args
    rec = recommend(Request(gpu_gb=gpu, examples=examples, model=model, task=task, priority=priority))
    assert (rec.chosen.cand.label if rec.chosen else None) == expected, rec.reasons()


def test_a_recommendation_always_fits_its_budget():
    for gpu in (6, 12, 24, 40, 80):
        for model in ("qwen2.5-0.5b", "llama-3.2-3b", "llama-2-13b"):
            rec = recommend(Request(gpu_gb=gpu, examples=2_000, model=model, seq_len=1024))
            if rec.chosen:
                assert rec.chosen.fits
                need = rec.chosen.peak_gib + rec.budget.cuda_context_gib + rec.budget.margin_gib
                assert need <= gpu + 1e-9
            assert all(o.fits == (o.peak_gib <= rec.budget.usable_gib) for o in rec.options)


@pytest.mark.parametrize("priority", ["quality", "memory", "speed", "latency", "adapter-size"])
@pytest.mark.parametrize("examples", [100, 5_000, 300_000])
@pytest.mark.parametrize("model", ["qwen2.5-1.5b", "llama-2-7b", "llama-2-70b"])
def test_more_memory_never_gives_a_worse_answer(model, examples, priority):
    scores = []
    for gpu in (4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 320):
        rec = recommend(Request(gpu_gb=gpu, examples=examples, model=model, priority=priority))
        scores.append(rec.chosen.score if rec.chosen else float("-inf"))
    assert scores == sorted(scores), scores


def test_nothing_fits_names_the_smallest_budget_and_that_budget_works():
    req = Request(gpu_gb=24, examples=500, model="llama-3.1-70b")
    rec = recommend(req)
    assert rec.chosen is None and rec.smallest_budget_gib > 24
    data = rec.to_json()
    assert data["method"] is None and data["fits"] is False and data["config"] is None
    assert any("smallest budget" in r for r in data["reasons"])
    at = recommend(replace(req, gpu_gb=rec.smallest_budget_gib + 1e-6))
    assert at.chosen is not None
    below = recommend(replace(req, gpu_gb=rec.smallest_budget_gib * 0.99))
    assert below.chosen is None


def test_budget_keeps_context_and_margin():
    b = Budget(24)
    assert b.usable_gib == pytest.approx(24 - b.cuda_context_gib - MARGIN_FRACTION * 24)
    assert Budget.needed_for(b.usable_gib) == pytest.approx(24)


def test_gradient_checkpointing_and_batch_are_lowered_to_fit_and_said():
    roomy = recommend(Request(gpu_gb=80, examples=500, model="llama-2-7b"))
    tight = recommend(Request(gpu_gb=16, examples=500, model="llama-2-7b"))
    assert roomy.chosen.workload.batch == 8 and not roomy.chosen.workload.grad_ckpt
    assert tight.chosen.cand.label == roomy.chosen.cand.label  # the same method, made to fit
    assert tight.chosen.workload.grad_ckpt
    assert any("gradient checkpointing is on" in r for r in tight.reasons())


def test_json_shape():
    data = recommend(Request(gpu_gb=24, examples=500, model="llama-2-7b")).to_json()
    assert data["method"] in methods.load_all() and data["fits"] is True
    assert {"method", "config", "estimated_peak_gib", "fits", "alternatives", "reasons", "rules_fired",
            "budget"} <= set(data)
    assert {"rank", "target_modules", "batch_size", "gradient_checkpointing", "precision",
            "learning_rate"} <= set(data["config"])
    assert data["alternatives"] and all({"method", "estimated_peak_gib", "fits", "reason"} <= set(a)
                                        for a in data["alternatives"])
    full = next(a for a in data["alternatives"] if a["method"] == "full")
    assert full["fits"] is False and "over the usable" in full["reason"]
    json.dumps(data)  # serialisable as is


def test_rules_are_data_with_sources():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for r in RULES:
        assert r.says.strip() and r.source.strip(), r.name
    for m in methods.load_all().values():
        if m.advice:
            assert m.advice.why.strip() and m.advice.learning_rate > 0 and m.advice.candidates
    data = recommend(Request(gpu_gb=24, examples=500, model="llama-2-7b")).to_json()
    fired = {r["name"] for r in data["rules_fired"]}
    assert {"rank-for-data-size", "small-data-no-full", "soft-prompts-need-scale"} <= fired
    assert "large-data-full" not in fired


def test_table_without_a_model_covers_common_sizes():
    rows = recommend_table(Request(gpu_gb=24, examples=500))
    assert [size for size, _ in rows] == ["0.5B", "1B", "3B", "7B", "13B", "70B"]
    params = [r.params for _, r in rows]
    assert params == sorted(params)


# ---- measured results -----------------------------------------------------------------------------------------

def _results(tmp_path, task="causal_lm", model="llama-2-7b"):
    store = ResultStore(tmp_path / "run")
    store.create({"resolved_suite": {"model": {"name": model, "task": task}}, "runs": []})
    for name, mtype, settings, em in (("lora-r8", "lora", {"ranks": [8]}, 0.40), ("ia3", "ia3", {}, 0.46),
                                      ("prompt", "prompt", {}, 0.10), ("full", "full", {}, 0.41)):
        store.write(RunRecord(run=name, method=mtype, settings=settings, status="ok",
                              eval={"exact_match": em, "perplexity": 3.0}))
    return store.root


def test_measured_scores_rerank_and_are_named(tmp_path):
    from peftbench.recommend import load_measured

    req = Request(gpu_gb=24, examples=500, model="llama-2-7b", results=_results(tmp_path))
    rec = recommend(req, load_measured(req.results, "causal_lm"))
    assert rec.chosen.cand.label == "ia3"  # measured best, 6 points ahead of LoRA
    assert rec.chosen.measured == "ia3: exact_match 0.46"
    assert any(r.name == "measured-scores" for r in rec.rules_fired)
    lora = next(o for o in rec.options if o.cand.label == "lora r8 all-linear")
    assert lora.measured == "lora-r8: exact_match 0.4"
    assert dict(lora.effects)["measured-scores"] == pytest.approx(2 * 10 * (0.40 - 0.46))


def test_measured_from_another_model_is_noted(tmp_path):
    from peftbench.recommend import load_measured

    req = Request(gpu_gb=24, examples=500, model="mistral-7b", results=_results(tmp_path))
    rec = recommend(req, load_measured(req.results, "causal_lm"))
    assert any("come from llama-2-7b" in n for n in rec.notes)


# ---- CLI ------------------------------------------------------------------------------------------------------

def test_cli_design_card_example():
    result = invoke("recommend", "--gpu-gb", "24", "--examples", "500")
    assert result.exit_code == 0, result.output
    for part in ("0.5B", "70B", "lora r8 all-linear", "none fits"):
        assert part in result.stdout


def test_cli_one_model_with_reasons():
    result = invoke("recommend", "--gpu-gb", "24", "--examples", "500", "--model", "llama-2-7b", "--seq-len", "1024")
    assert result.exit_code == 0, result.output
    assert "recommended: lora r8 all-linear" in result.stdout
    assert "over the usable" in result.stdout  # full fine-tuning's reason
    assert "rank-for-data-size" in result.stdout


def test_cli_json(tmp_path):
    result = invoke("recommend", "--gpu-gb", "8", "--examples", "20000", "--model", "mistral-7b", "--task",
                    "causal_lm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "qlora" and data["fits"] is True and data["estimated_peak_gib"] > 0
    table = json.loads(invoke("recommend", "--gpu-gb", "8", "--examples", "20000", "--json").stdout)
    assert len(table["models"]) == 6


def test_cli_results(tmp_path):
    root = _results(tmp_path)
    result = invoke("recommend", "--gpu-gb", "24", "--examples", "500", "--model", "llama-2-7b", "--results", root,
                    "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "ia3"


def test_cli_no_fit_exits_0():
    result = invoke("recommend", "--gpu-gb", "2", "--examples", "500", "--model", "llama-2-70b", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["method"] is None and data["smallest_budget_gib"] > 2


@pytest.mark.parametrize(("args", "fragments"), [
    (("--gpu-gb", "0", "--examples", "5"), ("--gpu-gb", "0.0 is not in the range")),
    (("--gpu-gb", "-8", "--examples", "5"), ("--gpu-gb",)),
    (("--gpu-gb", "lots", "--examples", "5"), ("--gpu-gb", "'lots'")),
    (("--gpu-gb", "24", "--examples", "0"), ("--examples",)),
    (("--gpu-gb", "24",), ("Missing option '--examples'",)),
    (("--gpu-gb", "24", "--examples", "5", "--model", "lama-2-7b"), ("unknown model", "did you mean 'llama-2-7b'")),
    (("--gpu-gb", "24", "--examples", "5", "--priority", "cost"), ("--priority",)),
    (("--gpu-gb", "24", "--examples", "5", "--results", "."), ("--results needs --model",)),
])
def test_cli_errors(args, fragments):
    assert_user_error(invoke("recommend", *args), *fragments)


def test_cli_results_conflicts(tmp_path):
    root = _results(tmp_path, task="classification")
    assert_user_error(invoke("recommend", "--gpu-gb", "24", "--examples", "5", "--model", "llama-2-7b", "--results",
                             root), "measured on task classification", "--task")
    assert_user_error(invoke("recommend", "--gpu-gb", "24", "--examples", "5", "--model", "llama-2-7b", "--results",
                             tmp_path / "nothing"), "not a peftbench results directory")


def test_prefix_tuning_is_never_proposed_with_checkpointing():
    for gpu in (16, 24, 80):
        rec = recommend(Request(gpu_gb=gpu, examples=500, model="llama-2-7b", seq_len=2048))
        prefix = [o for o in rec.options if o.cand.method == "prefix"]
        assert prefix and all(not o.workload.grad_ckpt for o in prefix)


def test_a_run_of_several_seeds_counts_once_by_its_mean(tmp_path):
    from peftbench.recommend import load_measured

    store = ResultStore(tmp_path / "run")
    store.create({"resolved_suite": {"model": {"name": "llama-2-7b", "task": "causal_lm"}}, "runs": []})
    for seed, em in enumerate((0.40, 0.50, 0.48)):
        store.write(RunRecord(run="ia3", method="ia3", status="ok", seed=seed, eval={"exact_match": em}),
                    f"ia3@s{seed}")
    store.write(RunRecord(run="lora-r8", method="lora", status="ok", seed=0, eval={"exact_match": 0.2}))
    store.write(RunRecord(run="lora-r8", method="lora", status="failed", seed=1), "lora-r8@s1")
    records, _ = load_measured(store.root, "causal_lm")
    assert [(r.run, r.eval["exact_match"]) for r in records] == [("ia3", pytest.approx(0.46)), ("lora-r8", 0.2)]
