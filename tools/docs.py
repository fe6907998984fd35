"""Regenerate the parts of docs/ that mirror the code, so they cannot drift from it.

    python tools/docs.py            # rewrite the generated blocks in docs/*.md
    python tools/docs.py --check    # exit 1 and name the blocks that differ (tests/unit/test_docs.py does this)

A generated block sits between `<!-- begin NAME -->` and `<!-- end NAME -->` in a hand-written page; everything
outside the markers is prose and is left alone. The blocks: the suite schema (every key's type, default and
description, from the pydantic models), each method's own settings, the method and task registries, the
recommender's rules, the memory model's components, and every command's --help. No torch import.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from peftbench import methods, tasks  # noqa: E402
from peftbench.methods.base import MethodSettings  # noqa: E402


def _type(annotation) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return text.replace("Annotated[int, Gt(gt=0)]", "positive int").replace("Annotated[float, Gt(gt=0)]",
                                                                          "positive float")


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    return f"`{field.default!r}`"


def _fields_table(model, skip: tuple[str, ...] = ()) -> str:
    rows = ["| key | type | default | what it is |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("|", "\\|")
        kind = _type(field.annotation).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {_default(field)} | {description} |")
    return "\n".join(rows)


def suite_schema() -> str:
    from peftbench import suite

    sections = [("model", suite.ModelConfig), ("dataset", suite.DatasetConfig), ("training", suite.TrainingConfig),
                ("evaluation", suite.EvaluationConfig), ("latency", suite.LatencyConfig),
                ("runner", suite.RunnerConfig)]
    parts = []
    for key, model in sections:
        parts += [f"### `{key}`", "", _fields_table(model), ""]
    parts += ["### every entry of `methods`", "", _fields_table(MethodSettings), ""]
    return "\n".join(parts).rstrip()


def method_settings() -> str:
    parts = []
    for name, m in methods.load_all().items():
        own = [k for k in m.Settings.model_fields if k not in MethodSettings.model_fields]
        parts += [f"### `{name}`", "", m.summary + ".", ""]
        table = _fields_table(m.Settings, skip=tuple(MethodSettings.model_fields)) if own else "No settings of its own."
        parts += [table, ""]
    return "\n".join(parts).rstrip()


def method_table() -> str:
    rows = ["| method | family | what it is | mergeable | other traits | peft type | recommender proposes it |",
            "|---|---|---|---|---|---|---|"]
    for name, m in methods.load_all().items():
        t = m.traits
        other = [x for x in ("quantized base" if t.quantized_base else "", t.extra_positions,
                             "needs CUDA" if t.needs_cuda else "",
                             "" if t.gradient_checkpointing else "no gradient checkpointing") if x]
        rows.append(f"| `{name}` | {m.family} | {m.summary} | {'yes' if t.mergeable else 'no'} | "
                    f"{'; '.join(other) or '-'} | {m.peft_type or '-'} | {'yes' if m.advice else 'no'} |")
    return "\n".join(rows)


def task_table() -> str:
    rows = ["| task | what it is | peft task type | head | generates | metrics | row fields |",
            "|---|---|---|---|---|---|---|"]
    for kind in tasks.load_all().values():
        rows.append(f"| `{kind.name}` | {kind.summary} | {kind.peft_task_type} | {kind.head} | "
                    f"{'yes' if kind.generates else 'no'} | {', '.join(kind.metrics)} | {', '.join(kind.row_fields)} |")
    return "\n".join(rows)


def metrics_table() -> str:
    from peftbench.metrics import METRICS, PRIMARY

    rows = ["| metric | CSV columns | label | better | task kinds | what it is |", "|---|---|---|---|---|---|"]
    for m in METRICS.values():
        primary = [t for t, name in PRIMARY.items() if name == m.name]
        kinds = ", ".join(f"`{t}`" + (" (ranks by it)" if t in primary else "") for t in m.tasks)
        rows.append(f"| `{m.name}` | `eval_{m.name}`, `base_{m.name}` | {m.label} | "
                    f"{'higher' if m.higher_is_better else 'lower'} | {kinds} | {m.description} |")
    return "\n".join(rows)


def rules_table() -> str:
    from peftbench.recommend import MEASURED_RULE, RULES

    rows = ["| rule | says | source |", "|---|---|---|"]
    rows += [f"| `{r.name}` | {r.says} | {r.source} |" for r in (*RULES, MEASURED_RULE)]
    return "\n".join(rows)


def memory_components() -> str:
    from peftbench.estimate import COMPONENTS, FORMULAS

    rows = ["| component | what it holds |", "|---|---|"]
    rows += [f"| `{name}` | {what} |" for name, what in COMPONENTS.items()]
    rows += ["", "| formula (`peak_is`) | how the components combine |", "|---|---|"]
    rows += [f"| `{name}` | {how} |" for name, how in FORMULAS.items()]
    return "\n".join(rows)


def cli_help() -> str:
    import click

    from peftbench.cli import main

    # Contexts as click makes them when a user types the command (the group's settings, -h included), at a fixed
    # width so the text does not depend on the terminal.
    width = dict(terminal_width=110, max_content_width=110)
    root = click.Context(main, info_name="peftbench", **main.context_settings, **width)
    parts = ["```", main.get_help(root), "```", ""]
    for name in sorted(main.commands):
        cmd = main.commands[name]
        ctx = click.Context(cmd, info_name=name, parent=root, **width)
        parts += [f"### `peftbench {name}`", "", "```", cmd.get_help(ctx), "```", ""]
    return "\n".join(parts).rstrip()


BLOCKS = {
    "docs/suite.md": {"suite-schema": suite_schema},
    "docs/methods.md": {"methods": method_table, "tasks": task_table, "method-settings": method_settings},
    "docs/recommender.md": {"rules": rules_table},
    "docs/columns.md": {"metrics": metrics_table},
    "docs/memory-model.md": {"components": memory_components},
    "docs/cli.md": {"cli": cli_help},
}


def fill(text: str, name: str, content: str) -> str:
    """`text` with the block NAME replaced by `content`."""
    pattern = re.compile(rf"(<!-- begin {name} -->\n)(?:.*?\n)?(<!-- end {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- begin {name} --> ... <!-- end {name} --> block")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text)


def stale() -> list[str]:
    """'file: block' for every generated block that differs from what the code says now."""
    out = []
    for path, blocks in BLOCKS.items():
        text = (REPO / path).read_text()
        for name, render in blocks.items():
            if fill(text, name, render()) != text:
                out.append(f"{path}: {name}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say which blocks are out of date")
    args = ap.parse_args()
    if args.check:
        out_of_date = stale()
        for line in out_of_date:
            print(f"out of date: {line} (run python tools/docs.py)")
        return 1 if out_of_date else 0
    for path, blocks in BLOCKS.items():
        text = (REPO / path).read_text()
        for name, render in blocks.items():
            text = fill(text, name, render())
        (REPO / path).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
