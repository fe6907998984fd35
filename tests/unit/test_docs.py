"""docs/ says what the code does: the generated blocks are fresh, every CSV column is described, every relative
link resolves, and the README stays a front page. No torch."""

from __future__ import annotations

import importlib.util
import re

from peftbench.results import CSV_COLUMNS

from ..conftest import REPO


def docs_tool():
    spec = importlib.util.spec_from_file_location("peftbench_docs_tool", REPO / "tools" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_match_the_code():
    assert docs_tool().stale() == [], "run: python tools/docs.py"


def test_every_csv_column_is_described():
    text = (REPO / "docs" / "columns.md").read_text()
    described = set(re.findall(r"`([a-z0-9_]+)`", text))
    assert not [c for c in CSV_COLUMNS if c not in described]


def test_the_columns_table_names_only_real_fields():
    from dataclasses import fields

    from peftbench.results import RunRecord

    text = (REPO / "docs" / "columns.md").read_text()
    first_cells = re.findall(r"^\| (`[^|]+`) \|", text, re.M)
    named = {n for cell in first_cells for n in re.findall(r"`([a-z0-9_<>]+)`", cell)}
    from peftbench.metrics import METRICS
    from peftbench.summary import summary_columns

    patterns = {"eval_<metric>", "base_<metric>", "<figure>", "<figure>_lo", "<figure>_hi", "eval_<metric>_rows_lo",
                "eval_<metric>_rows_hi"}
    real = {f.name for f in fields(RunRecord)} | set(CSV_COLUMNS) | set(METRICS) | set(summary_columns()) | patterns
    assert named and named <= real, named - real


def test_every_summary_column_is_described():
    from peftbench.metrics import METRICS
    from peftbench.summary import summary_columns

    text = (REPO / "docs" / "columns.md").read_text().split("## summary.csv")[1]
    described = set(re.findall(r"`([a-z0-9_]+)`", text))
    scores = {f"{side}_{m}" for m in METRICS for side in ("eval", "base")}
    missing = []
    for c in summary_columns():
        figure = re.sub(r"(_rows)?_(lo|hi)$", "", c)
        if c not in described and figure not in described and figure not in scores:
            missing.append(c)
    assert not missing


def test_relative_links_resolve():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "CONTRIBUTING.md"]:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken


def test_the_readme_is_a_front_page():
    """What, install, the main job, a sample table, the commands, where to read more; the reference is in docs/."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 12_000
    for page in ("docs/columns.md", "docs/suite.md", "docs/cli.md", "docs/memory-model.md", "docs/measurements.md"):
        assert f"]({page})" in readme, page
