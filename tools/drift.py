"""Drift check: do the newest releases of peftbench's dependencies still work? Run by hand, before users find out.

    python tools/drift.py                    # newest releases inside pyproject.toml's ranges
    python tools/drift.py --beyond-caps      # newest releases above the upper bounds too (before raising them)
    python tools/drift.py --with-torch       # torch too (a newer torch is a multi-GB CUDA build on CPU machines)

It builds a scratch virtual environment from the lock (constraints.txt) and runs the checks there: the fast tests
(tests/unit and tests/integration) and a few-step run of every smoke-suite method through the real CLI
(tests/system/test_smoke_suite.py). Then, one package at a time, it moves that package to its newest allowed release
(the rest stays locked, except what pip must move with it) and runs the checks again; last, every newer release
together. It prints, for each package version, what it breaks that the lock does not, and which of them pass: the
lock can move to those. Checks that already fail on the lock are reported first, because they mean the lock
itself does not work on this machine (another CPU, say).

Run it from the project's own environment (it needs `packaging`); it needs the package index, not the model hub.
`--repo` checks another checkout and `--lock` starts from another lock (e.g. to see an old lock fail).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
CHECKS = (  # (name, pytest arguments)
    ("fast tests", ["tests/unit", "tests/integration"]),
    ("smoke methods", ["tests/system/test_smoke_suite.py"]),
)


@dataclass
class Outcome:
    label: str
    changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # name -> (lock, now)
    install_error: str = ""
    failures: dict[str, str] = field(default_factory=dict)  # test id -> first line of its failure
    seconds: float = 0.0


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def direct_requirements(repo: Path) -> list[Requirement]:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    extras = [r for reqs in project.get("optional-dependencies", {}).values() for r in reqs]
    return [Requirement(r) for r in project["dependencies"] + extras]


def without_caps(spec: SpecifierSet) -> SpecifierSet:
    return SpecifierSet(",".join(str(s) for s in spec if s.operator in (">=", ">", "!=")))


def released_versions(python: Path, name: str) -> list[Version]:
    """Every final release the package index offers (`pip index versions`), newest first."""
    out = sh([str(python), "-m", "pip", "index", "versions", name, "--disable-pip-version-check"])
    match = re.search(r"Available versions:\s*(.+)", out.stdout)
    versions = []
    for text in (match.group(1).split(",") if match else []):
        try:
            v = Version(text.strip())
        except InvalidVersion:
            continue
        if not (v.is_prerelease or v.is_devrelease or v.local):  # local builds (2.13.0+cpu) are not releases
            versions.append(v)
    return sorted(set(versions), reverse=True)


def newest_allowed(python: Path, req: Requirement, beyond_caps: bool) -> str | None:
    spec = without_caps(req.specifier) if beyond_caps else req.specifier
    for v in released_versions(python, req.name):
        if spec.contains(v):
            return str(v)
    return None


def freeze(python: Path) -> dict[str, str]:
    out = sh([str(python), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"]).stdout
    pins = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {canonicalize_name(name): version.split("+", 1)[0] for name, version in pins}


def pip_install(python: Path, args: list[str]) -> str:
    """'' on success, else pip's last error line."""
    out = sh([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])
    if out.returncode == 0:
        return ""
    lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return (lines[-1] if lines else f"pip exited with {out.returncode}")[:300]


def run_checks(python: Path, repo: Path, scratch: Path) -> dict[str, str]:
    failures = {}
    for name, args in CHECKS:
        junit = scratch / f"junit-{name.replace(' ', '-')}.xml"
        junit.unlink(missing_ok=True)
        proc = sh([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args],
                  cwd=repo, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if not junit.is_file():  # pytest died before writing its report (a crash, an import error)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
            failures[f"{name} (pytest exit {proc.returncode})"] = tail[0][:300]
            continue
        for case in ET.parse(junit).getroot().iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                test_id = f"{case.get('classname', '').replace('tests.', '')}::{case.get('name')}"
                message = " ".join((bad.get("message") or bad.text or "").split())
                failures[test_id] = message[:300]
        if proc.returncode not in (0, 1):  # 1: tests failed (reported above); anything else is pytest itself
            failures[f"{name} (pytest exit {proc.returncode})"] = "the test process did not exit cleanly"
    return failures


def restore_lock(python: Path, lock: Path) -> str:
    return pip_install(python, ["-r", str(lock)])


def trial(python: Path, repo: Path, scratch: Path, lock: Path, pins: dict[str, str], label: str,
          upgrades: dict[str, str]) -> Outcome:
    """The lock with `upgrades` (name -> version) on top; what moved, what pip refused, which checks fail."""
    started = time.perf_counter()
    outcome = Outcome(label)
    if upgrades:
        rest = scratch / "constraints-rest.txt"
        rest.write_text("".join(f"{n}=={v}\n" for n, v in pins.items() if n not in upgrades))
        wanted = [f"{n}=={v}" for n, v in upgrades.items()]
        error = pip_install(python, ["-c", str(rest), *wanted])
        if error:  # the rest of the lock does not admit it: let pip move what it must
            error = pip_install(python, wanted)
        if error:
            outcome.install_error = error
            restore_lock(python, lock)
            return outcome
    now = freeze(python)
    outcome.changed = {n: (pins.get(n), now.get(n)) for n in sorted(set(pins) | set(now))
                       if pins.get(n) != now.get(n) and n != "peftbench"}
    outcome.failures = run_checks(python, repo, scratch)
    outcome.seconds = time.perf_counter() - started
    if upgrades:
        restore_lock(python, lock)
    return outcome


def report(baseline: Outcome, trials: list[Outcome], newest: dict[str, tuple[str, str | None]]) -> None:
    print("\n== drift report ==")
    print(f"{'package':<22}{'lock':<12}{'newest allowed':<16}")
    for name, (locked, new) in newest.items():
        print(f"{name:<22}{locked:<12}{new or '-':<16}{'' if new and new != locked else '(the lock is the newest)'}")
    print(f"\nthe lock itself: {'all checks pass' if not baseline.failures else f'{len(baseline.failures)} fail'}"
          f" ({baseline.seconds:.0f} s)")
    for test, msg in baseline.failures.items():
        print(f"  FAIL {test}: {msg}")
    for t in trials:
        moved = ", ".join(f"{n} {a or '-'} -> {b or '-'}" for n, (a, b) in t.changed.items())
        if t.install_error:
            print(f"\n{t.label}: cannot be installed beside the lock: {t.install_error}")
            continue
        new = {k: v for k, v in t.failures.items() if k not in baseline.failures}
        other = {k: v for k, v in t.failures.items() if k in baseline.failures and baseline.failures[k] != v}
        fixed = [k for k in baseline.failures if k not in t.failures]
        verdict = "passes every check the lock passes" if not new else f"breaks {len(new)} check(s)"
        print(f"\n{t.label}: {verdict} ({t.seconds:.0f} s); installed: {moved or 'nothing new'}")
        for test, msg in new.items():
            print(f"  BREAKS {test}: {msg}")
        for test, msg in other.items():  # e.g. the smoke check, which names every failing method at once
            print(f"  fails differently {test}: {msg}")
        for test in fixed:
            print(f"  fixes  {test}")
    passing = [t.label for t in trials if not t.install_error and not set(t.failures) - set(baseline.failures)]
    if not trials:
        print("\nnothing newer to try: the lock holds the newest releases allowed")
    else:
        print("\nthe lock can move to: " + (", ".join(passing) if passing else "nothing newer passes"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to test (default: this one)")
    ap.add_argument("--lock", type=Path, default=None, help="the lock to start from (default: REPO/constraints.txt)")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "peftbench-drift")
    ap.add_argument("--beyond-caps", action="store_true", help="also releases above pyproject's upper bounds")
    ap.add_argument("--with-torch", action="store_true", help="also a newer torch (several GB on CPU machines)")
    ap.add_argument("--only", default="", help="comma-separated packages to try (default: every direct dependency)")
    ap.add_argument("--json", type=Path, default=None, help="also write the outcomes as JSON")
    args = ap.parse_args()
    repo, lock = args.repo.resolve(), (args.lock or args.repo / "constraints.txt").resolve()
    pins = read_lock(lock)

    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    venv = args.scratch / "venv"
    print(f"scratch environment {venv} from {lock}", flush=True)
    sh([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for step in (["torch==" + pins["torch"]], ["-c", str(lock), "-e", f"{repo}[test]"]):
        error = pip_install(python, step)
        if error:
            print(f"cannot install the lock: {error}")
            return 2

    only = {canonicalize_name(n) for n in args.only.split(",") if n}
    newest: dict[str, tuple[str, str | None]] = {}
    for req in direct_requirements(repo):
        name = canonicalize_name(req.name)
        if (only and name not in only) or (name == "torch" and not args.with_torch):
            continue
        newest[name] = (pins.get(name, "-"), newest_allowed(python, req, args.beyond_caps))
    if not args.with_torch:
        print(f"torch stays at the lock's {pins.get('torch')} (--with-torch to try newer)")
    upgrades = {n: new for n, (locked, new) in newest.items() if new and new != locked}

    print("checks on the lock ...", flush=True)
    baseline = trial(python, repo, args.scratch, lock, pins, "the lock", {})
    trials = []
    for name, version in upgrades.items():
        print(f"checks with {name} {version} ...", flush=True)
        trials.append(trial(python, repo, args.scratch, lock, pins, f"{name} {version}", {name: version}))
    if len(upgrades) > 1:
        print("checks with every newer release together ...", flush=True)
        together = ", ".join(f"{n} {v}" for n, v in upgrades.items())
        trials.append(trial(python, repo, args.scratch, lock, pins, f"all together ({together})", upgrades))
    report(baseline, trials, newest)
    if args.json:
        args.json.write_text(json.dumps({"newest": newest, "baseline": baseline.__dict__,
                                         "trials": [t.__dict__ for t in trials]}, indent=2, default=str))
    broken = any(set(t.failures) - set(baseline.failures) or t.install_error for t in trials)
    return 1 if baseline.failures or broken else 0


if __name__ == "__main__":
    sys.exit(main())
