"""Shared by the benchmark scripts that run several generated suites with `peftbench run` and then compare them
(calibrate.py, data_size.py): write each suite, run the ones not yet run, and the run/compare command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def run_suites(out: Path, suites: list[dict]) -> None:
    """Write every suite under `out` and run it into out/runs, skipping suites that already have a run there."""
    out.mkdir(parents=True, exist_ok=True)
    for suite in suites:
        path = out / f"{suite['name']}.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        if any((out / "runs").glob(f"{suite['name']}-*")):
            continue
        subprocess.run([sys.executable, "-c", "from peftbench.cli import main; main()", "run", str(path),
                        "--results-dir", str(out / "runs")], cwd=REPO, check=False)


def main(doc: str, default_out: str, suites: Callable[[], list[dict]], compare: Callable[[Path], None]) -> None:
    """`run [--out DIR]` or `compare DIR`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, default=REPO / "results" / default_out)
    c = sub.add_parser("compare")
    c.add_argument("results", type=Path)
    args = ap.parse_args()
    run_suites(args.out, suites()) if args.cmd == "run" else compare(args.results)
