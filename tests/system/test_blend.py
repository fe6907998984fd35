"""`peftbench blend`: two LoRA adapters trained by `peftbench run` on two built-in tasks, blended and scored."""

from __future__ import annotations

import copy
import json

import pytest

from peftbench.results import ResultStore

from ..conftest import TINY_CAUSAL, assert_user_error, invoke, write_suite


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{task: (adapter dir, run record)} for LoRA r4 trained on word-copy and on word-reverse."""
    root = tmp_path_factory.mktemp("blend")
    out = {}
    for task in ("word-copy", "word-reverse"):
        suite = copy.deepcopy(TINY_CAUSAL)
        suite["name"] = task
        suite["dataset"]["builtin"] = task
        suite["training"]["steps"] = 6
        suite["runner"]["save_adapters"] = True
        result = invoke("run", write_suite(root, suite, f"{task}.yaml"), "--results-dir", root / "results")
        assert result.exit_code == 0, result.output
        run_dir = next((root / "results").glob(f"{task}-*"))
        record = ResultStore(run_dir).records()[0]
        assert record.status == "ok", record.error
        out[task] = (run_dir / "adapters" / record.run, record)
    return out


def test_blend_scores_every_task_at_every_weight(trained):
    copy_dir, copy_rec = trained["word-copy"]
    rev_dir, rev_rec = trained["word-reverse"]
    result = invoke("blend", "--adapter", f"copy={copy_dir}", "--adapter", f"reverse={rev_dir}",
                    "--weights", "1,0", "--weights", "0.7,0.8", "--weights", "0,1", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["blends"]
    assert [r["weights"] for r in rows] == [{"copy": 1, "reverse": 0}, {"copy": 0.7, "reverse": 0.8},
                                            {"copy": 0, "reverse": 1}]
    for r in rows:
        assert set(r["scores"]) == {"copy", "reverse"}
        assert all({"loss", "perplexity", "exact_match"} <= set(s) for s in r["scores"].values())
    # `cat` sums the weighted updates exactly: weight 1 on one adapter and 0 on the other is that adapter alone,
    # so its score on its own task is what its training run measured.
    assert rows[0]["scores"]["copy"]["loss"] == pytest.approx(copy_rec.score('loss'), rel=1e-5)
    assert rows[2]["scores"]["reverse"]["loss"] == pytest.approx(rev_rec.score('loss'), rel=1e-5)
    assert rows[1]["scores"]["copy"]["loss"] != rows[0]["scores"]["copy"]["loss"]


def test_blend_table_and_errors(trained, tmp_path):
    copy_dir, _ = trained["word-copy"]
    rev_dir, _ = trained["word-reverse"]
    result = invoke("blend", "--adapter", f"copy={copy_dir}", "--adapter", f"reverse={rev_dir}", "--weights", "1,1")
    assert result.exit_code == 0, result.output
    assert "copy: perplexity" in result.stdout and "reverse: exact match" in result.stdout
    assert_user_error(invoke("blend", "--adapter", f"copy={copy_dir}", "--weights", "1"), "at least two adapters")
    assert_user_error(invoke("blend", "--adapter", f"a={copy_dir}", "--adapter", f"b={rev_dir}", "--weights", "1"),
                      "one weight per adapter")
    assert_user_error(invoke("blend", "--adapter", f"a={copy_dir}", "--adapter", f"b={rev_dir}", "--weights", "x,1"),
                      "comma-separated numbers")
    assert_user_error(invoke("blend", "--adapter", "nameless", "--adapter", f"b={rev_dir}", "--weights", "1,1"),
                      "expected NAME=VALUE")
    elsewhere = tmp_path / "loose"
    elsewhere.mkdir()
    assert_user_error(invoke("blend", "--adapter", f"a={elsewhere}", "--adapter", f"b={rev_dir}", "--weights", "1,1"),
                      "not inside a peftbench results directory", "--task a=SUITE.yaml")
