"""The `peftbench` command: a thin Click layer that parses, calls the library and prints.

User errors (PeftbenchError) end in one line on stderr and exit code 2. `--help` and every command here start
without importing torch; only the worker processes that `run` starts do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from . import __version__, tasks
from .blend import COMBINATIONS
from .errors import PeftbenchError
from .estimate import ADAPTER_DTYPES, ATTENTIONS, LOSSES, OPTIMIZERS, PRECISIONS, STRATEGIES
from .merge import DTYPES
from .recommend import PRIORITIES

out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


class Finite(click.FloatRange):
    """A float option in its range that is also a real number: click's FloatRange lets nan and inf through (every
    comparison with nan is false), and `--gpu-gb nan` would answer nonsense."""

    name = "number"

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PeftbenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.UsageError as e:  # a bad option of a command: one line too, instead of Click's usage block
            command = f"{e.ctx.command_path} --help" if e.ctx else "peftbench --help"
            click.echo(f"error: {e.format_message()} (see '{command}')", err=True)
            sys.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="peftbench")
def main() -> None:
    """Benchmark parameter-efficient fine-tuning methods on one model and one dataset, the same way for each."""


@main.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
def validate(suite_file: Path) -> None:
    """Check a suite file, its model, its data and its runs, without loading any weights."""
    from .runner import check_suite
    from .suite import load_suite

    loaded = load_suite(suite_file)
    notes = check_suite(loaded, hub_data=False)
    names = ", ".join(r.name for r in loaded.runs)
    seeds = loaded.suite.seeds
    each = f", each with seeds {', '.join(map(str, seeds))} ({len(loaded.jobs())} workers)" if seeds else ""
    out.print(f"{suite_file}: ok: {len(loaded.runs)} runs: {names}{each}", highlight=False)
    for note in notes:
        out.print(f"note: {note}", style="yellow", highlight=False)


@main.command("methods")
def list_methods() -> None:
    """List the registered methods, their traits and their settings."""
    from rich.table import Table

    from .builtin_tasks import TASKS
    from .methods import load_all

    table = Table(title="methods", title_justify="left", header_style="bold")
    for col in ("method", "what it is", "traits", "settings"):
        table.add_column(col)
    for m in load_all().values():
        t = m.traits
        traits = ["mergeable" if t.mergeable else "not mergeable"]
        traits += ["quantized base"] if t.quantized_base else []
        traits += [t.extra_positions] if t.extra_positions else []
        traits += ["needs CUDA"] if t.needs_cuda else []
        traits += ["no gradient checkpointing"] if not t.gradient_checkpointing else []
        table.add_row(m.name, m.summary, "; ".join(traits), m.describe_settings())
    out.print(table)
    kinds = Table(title="tasks", title_justify="left", header_style="bold")
    for col in ("task", "what it is", "peft task type", "metrics"):
        kinds.add_column(col)
    for kind in tasks.load_all().values():
        kinds.add_row(kind.name, kind.summary, kind.peft_task_type, ", ".join(kind.metrics))
    out.print(kinds)
    builtins = Table(title="built-in datasets", title_justify="left", header_style="bold")
    builtins.add_column("name")
    builtins.add_column("task")
    builtins.add_column("what it is")
    for spec in TASKS.values():
        builtins.add_row(spec.name, spec.kind, spec.description)
    out.print(builtins)


@main.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results directory of an interrupted run of the same suite: finished runs are kept, not re-run; "
                   "a run with a checkpoint (runner.checkpoint_every) continues from it.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Where the new <suite>-<timestamp> directory is made.")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Runs at a time: one GPU each (CUDA_VISIBLE_DEVICES) for a GPU suite, else an equal share of "
                   "the CPU cores each.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run each job as a Ray task: 'local' starts Ray on this machine, 'auto' joins the cluster this "
                   "machine is in, or a cluster address. One GPU per run for a GPU suite.")
@click.option("--ray-cpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray, the CPU cores (and threads) each run holds (a GPU run's too).")
@click.option("--launcher", type=click.Choice(["accelerate"]), default=None,
              help="Start each run's worker as --num-processes ranks through accelerate launch (one GPU each; on "
                   "a CPU, gloo ranks sharing the cores). A method entry's own `launch` wins.")
@click.option("--num-processes", type=click.IntRange(min=2), default=None, help="With --launcher: ranks per run.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="ddp", show_default=True,
              help="With --launcher: ddp (a replica per rank), fsdp (FSDP2: parameters, gradients and optimizer "
                   "states sharded over the ranks), zero2 or zero3 (DeepSpeed ZeRO stage 2 or 3).")
@click.option("--config-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="With --launcher: an accelerate config file (MULTI_GPU, MULTI_CPU, FSDP version 2, or DEEPSPEED "
                   "ZeRO 2/3) that gives the processes and strategy.")
def run(suite_file: Path, resume: Path | None, results_dir: Path, parallel: int, ray_address: str | None,
        ray_cpus: int, launcher: str | None, num_processes: int | None, strategy: str,
        config_file: str | None) -> None:
    """Run every method of SUITE_FILE, one worker process each, and print the results table.

    Exit code 0 when every run is ok, 1 when any run failed, ran out of memory or timed out (its record says why;
    `--resume` runs it again), 2 for bad input, before anything runs."""
    from .environment import manifest_lock_note
    from .report import print_records
    from .results import export_csv
    from .runner import plan_slots, preflight, run_suite
    from .suite import load_suite
    from .summary import summarize, summary_frame

    loaded = load_suite(suite_file)
    if resume is None:
        _check_writable_dir(results_dir, "--results-dir")
    if ray_address is not None and parallel != 1:
        raise PeftbenchError("--ray and --parallel: Ray decides how many runs go at once; give one of them")
    loaded = with_launcher(loaded, launcher, num_processes, strategy, config_file)
    if loaded.launched() and (parallel != 1 or ray_address is not None):
        raise PeftbenchError(f"multi-process runs with {'--parallel' if parallel != 1 else '--ray'}: not supported "
                             "yet; run them without it")
    slots = plan_slots(loaded, parallel)
    ray = None
    if ray_address is not None:
        from .ray_runner import connect

        if loaded.suite.runner.save_adapters or loaded.suite.runner.checkpoint_every:
            what = "save_adapters" if loaded.suite.runner.save_adapters else "checkpoint_every"
            raise PeftbenchError(f"--ray with runner.{what}: not supported yet (the files would stay on the node "
                                 "that wrote them)")
        device = loaded.suite.training.device
        ray = connect(ray_address, {"cuda": True, "cpu": False}.get(device), ray_cpus)
        notes = preflight(loaded, check_cuda=lambda: ray.gpu)  # the cluster's GPUs, not this machine's
    else:
        notes = preflight(loaded, at_once=len(slots))
    for note in notes:  # after every check that can stop the run: an error stays one line
        err.print(f"note: {note}", style="yellow", highlight=False)
    if len(slots) > 1:
        cpu = slots[0].name.startswith("cpu")
        err.print(f"note: {len(slots)} runs at a time ({', '.join(s.name for s in slots)})"
                  + ("; concurrent CPU runs share cores' caches and memory bandwidth, so their timings are not "
                     "those of one run alone" if cpu else ""), style="yellow", highlight=False)
    with _progress() as progress:
        store = run_suite(loaded, results_dir, resume, progress, slots, ray)
    records = store.records()
    export_csv(records, store.root / "results.csv")
    runs = summarize(records)
    summary_frame(runs).to_csv(store.root / "summary.csv", index=False)
    print_records(records, out, title=f"{loaded.suite.name}: {store.root}",
                  lock_note=manifest_lock_note(store.manifest()), unreadable=store.unreadable_note(),
                  logs=store.logs_dir, runs=runs)
    ok = sum(r.status == "ok" for r in records)
    where = (f"records {store.root}/runs/, CSV {store.root}/results.csv (a row per record) and summary.csv (a "
             f"row per run, over its seeds), worker logs "
             f"{store.root}/logs/")
    if (store.root / "adapters").is_dir():
        where += f", adapters {store.root}/adapters/"
    out.print(f"{ok}/{len(records)} runs ok: {where}", highlight=False)
    if ok < len(records):
        out.print(f"to run the {len(records) - ok} that are not ok again: peftbench run {suite_file} --resume "
                  f"{store.root}", highlight=False)
        sys.exit(1)


def with_launcher(loaded, launcher: str | None, processes: int | None, strategy: str, config_file: str | None):
    """The suite with `run --launcher accelerate --num-processes N --strategy S` (or `--config-file F`) applied to
    the runs without a `launch` of their own."""
    from .launch import Launch, from_config_file

    given = [name for name, v in (("--num-processes", processes), ("--strategy", strategy != "ddp" or None),
                                  ("--config-file", config_file)) if v is not None]
    if launcher is None:
        if given:
            raise PeftbenchError(f"{given[0]} needs --launcher accelerate")
        return loaded
    if config_file is not None:
        if len(given) > 1:
            raise PeftbenchError(f"--config-file and {given[0]}: the config file gives the processes and strategy")
        return loaded.with_launch(from_config_file(config_file))
    if processes is None:
        raise PeftbenchError("--launcher accelerate needs --num-processes N (2 or more), or --config-file")
    return loaded.with_launch(Launch(processes=processes, strategy=strategy))


def _check_writable_dir(path: Path, option: str) -> None:
    """One line if `path` cannot be made or written in (checked before anything runs)."""
    import os

    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise PeftbenchError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PeftbenchError(f"{option} {path}: cannot write in {existing} (permission denied)")


def _check_output(path: Path, option: str, results: Path, force: bool) -> None:
    """An export target: never one of the results folder's own files; an existing file only with --force; its
    folder must exist."""
    from .results import ResultStore

    target = path.resolve()
    inside = target.relative_to(results.resolve()).parts if target.is_relative_to(results.resolve()) else ()
    if inside and inside[0] in ResultStore.OWN:
        raise PeftbenchError(f"{option} {path}: that is the results folder's own file; choose another path")
    if not target.parent.is_dir():
        raise PeftbenchError(f"{option} {path}: folder {path.parent} does not exist")
    if target.is_dir():
        raise PeftbenchError(f"{option} {path}: is a directory")
    if target.exists() and not force:
        raise PeftbenchError(f"{option} {path} exists; add --force to overwrite it")


def _open_results(results: Path):
    """(store, records) of a results folder, or one line of error."""
    from .results import ResultStore

    store = ResultStore(results)
    if not store.runs_dir.is_dir():
        raise PeftbenchError(f"{results}: no runs/ directory (not a peftbench results directory)")
    records = store.records()
    if not records:
        why = f" ({store.unreadable_note()})" if store.unreadable else ""
        raise PeftbenchError(f"{results}: no finished runs yet{why}")
    return store, records


def _check_plot_target(path: Path, results: Path, force: bool) -> None:
    """--plot: a .png file (as _check_output), or a folder whose plot files are not overwritten without --force."""
    from .plots import PLOTS

    if path.suffix.lower() == ".png":
        _check_output(path, "--plot", results, force)
        return
    if path.exists() and not path.is_dir():
        raise PeftbenchError(f"--plot {path}: is a file; give a folder, or a file ending in .png")
    _check_writable_dir(path, "--plot")
    there = [n for n in PLOTS if (path / n).exists()]
    if there and not force:
        raise PeftbenchError(f"--plot {path}: {', '.join(there)} exist there; add --force to overwrite them")


@main.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table as CSV: one row per run, each figure's mean with its 95% interval.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the same rows as JSON.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the same rows as Parquet.")
@click.option("--per-seed", is_flag=True,
              help="Export one row per (run, seed): the records themselves, as in results.csv.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write the plots as PNG: into this folder, one file each, or all as panels of one .png file.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML page: table, plots, estimate vs measurement, environment, suite.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def report(results: Path, csv_path: Path | None, json_path: Path | None, parquet_path: Path | None, per_seed: bool,
           plot_path: Path | None, html_path: Path | None, force: bool) -> None:
    """Show the results table of a run directory again (per run: the mean over its seeds with a 95% interval),
    and export it, plot it, or write it as one HTML page."""
    from .environment import manifest_lock_note
    from .report import print_records
    from .summary import summarize

    for path, option in ((csv_path, "--csv"), (json_path, "--json"), (parquet_path, "--parquet"),
                         (html_path, "--html")):
        if path is not None:
            _check_output(path, option, results, force)
    if plot_path is not None:
        _check_plot_target(plot_path, results, force)
    store, records = _open_results(results)
    manifest = store.manifest_or_none()
    note = manifest_lock_note(manifest) if manifest is not None else None
    runs = summarize(records)  # once: the table, the exports, the plots and the page read the same summaries
    print_records(records, out, title=str(results), lock_note=note, unreadable=store.unreadable_note(),
                  logs=store.logs_dir, runs=runs)
    if csv_path or json_path or parquet_path:
        from .summary import export

        for line in export(records, runs, per_seed, csv=csv_path, json=json_path, parquet=parquet_path):
            out.print(line, highlight=False)
    if plot_path:
        from . import plots

        written = plots.write(runs, plot_path)
        out.print(f"wrote {', '.join(map(str, written))}" if written else "no plots: no run has the figures they "
                  "need", highlight=False)
    if html_path:
        from .page import page

        html_path.write_text(page(runs, manifest, manifest.get("suite_name", str(results)) if manifest else
                                  str(results), [note, store.unreadable_note()]))
        out.print(f"wrote {html_path} (self-contained: plots embedded, nothing fetched)", highlight=False)


@main.command()
@click.argument("before", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("after", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--all", "show_all", is_flag=True, help="List every figure, also those that did not move.")
def compare(before: Path, after: Path, show_all: bool) -> None:
    """What moved between two results folders of the same suite (another library version, another machine), per
    run and figure, and whether it moved beyond the noise. Exit code 0 whatever moved."""
    from .compare import compare_stores, print_comparison

    (store_a, records_a), (store_b, records_b) = _open_results(before), _open_results(after)
    result = compare_stores(records_a, records_b, store_a.manifest_or_none(), store_b.manifest_or_none())
    print_comparison(result, out, str(before), str(after), show_all)


@main.command("models")
def list_models() -> None:
    """List the model catalog: architectures that `estimate`, `plan` and `recommend` know without a download."""
    from rich.table import Table

    from . import catalog

    table = Table(title="model catalog", title_justify="left", header_style="bold")
    for col in ("name", "hub id", "params", "layers", "hidden", "heads (kv)", "vocab"):
        table.add_column(col, justify="left" if col in ("name", "hub id") else "right")
    for name, cfg in catalog.entries().items():
        heads = cfg["num_attention_heads"]
        table.add_row(name, cfg["_peftbench"]["hub_id"], f"{cfg['_peftbench']['params'] / 1e9:.2f}B",
                      str(cfg["num_hidden_layers"]), str(cfg["hidden_size"]),
                      f"{heads} ({cfg.get('num_key_value_heads') or heads})", f"{cfg['vocab_size']:,}")
    out.print(table)
    out.print("Also accepted: a local config.json (or a directory holding one), or a hub id (owner/name) whose "
              "config is in the local hub cache or can be fetched.", style="dim")


@main.command()
@click.option("--model", required=True,
              help="Catalog name (see `peftbench models`), local config.json (or its directory), or hub id.")
@click.option("--method", required=True, help="A registered method (see `peftbench methods`).")
@click.option("--rank", type=click.IntRange(min=1), default=None, help="LoRA/QLoRA rank [method default: 8].")
@click.option("--alpha", type=Finite(min=0, min_open=True), default=None, help="LoRA alpha [2 x rank].")
@click.option("--targets", default=None,
              help="Comma-separated module names, or all-linear [peft's default for the model].")
@click.option("--virtual-tokens", type=click.IntRange(min=1), default=None, help="Prefix/prompt length [20].")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Micro-batch size per GPU.")
@click.option("--seq-len", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per sequence (padded length).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="bf16", show_default=True,
              help="fp32; fp16/bf16: weights and activations in 16 bits; bf16-mixed/fp16-mixed: fp32 weights with "
                   "16-bit autocast.")
@click.option("--grad-ckpt/--no-grad-ckpt", default=False, show_default=True, help="Gradient checkpointing per block.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True)
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="GPUs (per-GPU figure).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="ddp", show_default=True,
              help="How full fine-tuning spreads over --gpus (PEFT methods replicate: DDP).")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
              help="Micro-batches per optimizer step (full fine-tuning then keeps its gradients through the next).")
@click.option("--packed/--padded", default=False, show_default=True,
              help="Packed batches pass no attention mask, so grouped KV heads are not expanded.")
@click.option("--attention", type=click.Choice(ATTENTIONS), default="sdpa", show_default=True,
              help="eager saves the attention probabilities (quadratic in --seq-len).")
@click.option("--adapter-dtype", type=click.Choice(ADAPTER_DTYPES), default="fp32", show_default=True,
              help="peft's autocast_adapter_dtype: adapters in fp32 (default) or in the model's dtype.")
@click.option("--loss", type=click.Choice(LOSSES), default="hf", show_default=True,
              help="transformers' cross-entropy (fp32 log-softmax), or a chunked 16-bit one (litgpt, torchtune).")
@click.option("--task", type=click.Choice(tasks.names()), default=tasks.DEFAULT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def estimate(model, method, rank, alpha, targets, virtual_tokens, batch, seq_len, precision, grad_ckpt, optimizer,
             gpus, strategy, grad_accum, packed, attention, adapter_dtype, loss, task, as_json) -> None:
    """Predict the peak GPU memory of fine-tuning MODEL with METHOD, offline, from the analytic memory model."""
    import json

    from .estimate import Workload
    from .plan import estimate_model, settings_from_options

    entry = settings_from_options(method, dict(rank=rank, alpha=alpha, targets=targets, virtual_tokens=virtual_tokens))
    if gpus == 1 and strategy != "ddp":
        raise PeftbenchError(f"--strategy {strategy} needs --gpus 2 or more")
    workload = Workload(batch=batch, seq_len=seq_len, precision=precision, grad_ckpt=grad_ckpt, optimizer=optimizer,
                        gpus=gpus, strategy=strategy, device="cuda", packed=packed, grad_accum=grad_accum,
                        attention=attention, adapter_dtype=adapter_dtype, loss=loss)
    est = estimate_model(model, task, method, entry, workload)
    if as_json:
        click.echo(json.dumps({"model": model, "method": method, "settings": entry, "workload": workload.__dict__,
                               **est.to_json()}))
        return
    from .report import print_estimate

    title = (f"{model} {method} {', '.join(f'{k}={v}' for k, v in entry.items() if k != 'method')} "
             f"batch {batch} x {seq_len} {precision}{' grad-ckpt' if grad_ckpt else ''} {optimizer}"
             f"{f' {gpus} GPUs {strategy}' if gpus > 1 else ''}")
    print_estimate(est, " ".join(title.split()), out)


def _budget_note(gpu_gb: float | None) -> str:
    if not gpu_gb:
        return ""
    from .recommend import MARGIN_FRACTION

    return (f", budget {gpu_gb:g} GiB: fits = needs at most {gpu_gb * (1 - MARGIN_FRACTION):,.1f} GiB "
            f"({MARGIN_FRACTION:.0%} kept for allocator slack and the estimate's error)")


@main.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gpu-gb", type=Finite(min=0, min_open=True), default=None,
              help="GPU memory in GiB (a '24 GB' card holds 24 GiB): say for each run whether it fits.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs per run, for the runs without a `launch` of their own (per-GPU figures).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="ddp", show_default=True,
              help="How those runs spread over --gpus.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def plan(suite_file: Path, gpu_gb: float | None, gpus: int, strategy: str, as_json: bool) -> None:
    """Every run of SUITE_FILE: exact parameter counts (meta device, no download) and predicted peak memory (per
    GPU for a run over several)."""
    import json

    from .exact import skip_bitsandbytes
    from .plan import plan_suite
    from .report import plan_table
    from .suite import load_suite

    if gpus == 1 and strategy != "ddp":
        raise PeftbenchError(f"--strategy {strategy} needs --gpus 2 or more")
    loaded = load_suite(suite_file)
    skip_bitsandbytes()  # this process only counts parameters
    rows = plan_suite(loaded, gpu_gb, spread=(gpus, strategy))
    if as_json:
        click.echo(json.dumps({"suite": loaded.suite.name, "gpu_gb": gpu_gb, "runs": [r.to_json() for r in rows]}))
        return
    t = loaded.suite.training
    title = (f"{loaded.suite.name}: {loaded.suite.model.name}, batch {t.batch_size} x {t.max_length} {t.precision}"
             f"{' grad-ckpt' if t.gradient_checkpointing else ''}{f', {gpus} GPUs {strategy}' if gpus > 1 else ''}"
             f"{_budget_note(gpu_gb)}")
    out.print(plan_table(rows, gpu_gb, title))
    out.print("trainable/total: peft's counters on the model built on the meta device. peak: the analytic memory "
              "model (PyTorch allocator); + CUDA ctx adds the CUDA context, outside the allocator.", style="dim")


@main.command()
@click.option("--gpu-gb", required=True, type=Finite(min=0, min_open=True),
              help="GPU memory as the vendor states it (a '24 GB' card holds 24 GiB), per GPU.")
@click.option("--examples", required=True, type=click.IntRange(min=1), help="Training examples you have.")
@click.option("--model", default=None,
              help="Catalog name (see `peftbench models`), local config.json, or hub id. Without it: a table of "
                   "common model sizes.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None,
              help="Tokens per training sequence [512, a typical instruction-tuning sample].")
@click.option("--task", type=click.Choice(tasks.names()), default=tasks.DEFAULT, show_default=True)
@click.option("--priority", type=click.Choice(PRIORITIES), default="quality", show_default=True,
              help="What to favour among the methods that fit.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs of --gpu-gb each (full fine-tuning shards over them with FSDP; adapters replicate).")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A peftbench results directory: its measured scores rank the methods (needs --model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def recommend(gpu_gb, examples, model, seq_len, task, priority, gpus, results_dir, as_json) -> None:
    """A fine-tuning method and its settings for a GPU budget and a data size, with the reasons."""
    import json

    from . import recommend as rec
    from .report import print_recommendation, recommendation_table

    if results_dir is not None and model is None:
        raise PeftbenchError("--results needs --model: measured scores belong to one model")
    req = rec.Request(gpu_gb=gpu_gb, examples=examples, model=model, seq_len=seq_len or rec.DEFAULT_SEQ_LEN,
                      task=task, priority=priority, gpus=gpus, results=results_dir)
    if model is None:
        rows = rec.recommend_table(req)
        if as_json:
            click.echo(json.dumps({"models": [{"size": size, **r.to_json()} for size, r in rows]}))
        else:
            out.print(recommendation_table(rows, req))
        return
    measured = rec.load_measured(results_dir, req.task) if results_dir is not None else None
    result = rec.recommend(req, measured)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        print_recommendation(result, out)


@main.command("merge")
@click.option("--adapter", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A peft adapter directory (e.g. <results>/adapters/<run> with runner.save_adapters: true).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the standalone merged model and its tokenizer are saved (new or empty).")
@click.option("--base", default=None,
              help="Base model: builtin:minilm, builtin:tiny-llama, a local directory or a hub id "
                   "[the adapter's base_model_name_or_path].")
@click.option("--dtype", type=click.Choice(DTYPES), default="fp32", show_default=True,
              help="Dtype the base is loaded, merged and saved in.")
@click.option("--rtol", type=Finite(min=0), default=None,
              help="Check tolerance, relative to the largest |logit| [fp32 1e-4, bf16 2e-2, fp16 5e-3].")
def merge_cmd(adapter: Path, out_dir: Path, base: str | None, dtype: str, rtol: float | None) -> None:
    """Merge ADAPTER into its base model, save it with its tokenizer, and check the saved model's outputs.

    Exit code 1 when the merged model's logits differ from the adapter model's by more than the tolerance."""
    if not adapter.is_dir():
        raise PeftbenchError(f"adapter directory not found: {adapter}")
    from .merge import merge

    result = merge(adapter, out_dir, base, dtype, rtol)
    verdict = "[green]match[/]" if result.ok else "[red]MISMATCH[/]"
    out.print(f"merged {result.peft_type} adapter ({result.task}) into {result.base} -> {result.out}", highlight=False)
    out.print(f"check: max |logit difference| {result.max_abs_diff:.3g} vs tolerance {result.tolerance:.3g} "
              f"(largest |logit| {result.max_abs_logit:.3g}): {verdict}", highlight=False)
    if not result.ok:
        sys.exit(1)


def _pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    pairs = []
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise PeftbenchError(f"{option} {v!r}: expected NAME=VALUE")
        pairs.append((name, rest))
    return pairs


@main.command("blend")
@click.option("--adapter", "adapters", multiple=True, required=True,
              help="NAME=DIR or NAME=hub-id: a LoRA adapter to blend; give two or more, in weight order.")
@click.option("--weights", "weights", multiple=True, required=True,
              help="One weight per adapter, comma-separated; repeat for every blend to score (--weights 0.7,0.8).")
@click.option("--task", "tasks", multiple=True,
              help="NAME=SUITE.yaml: the suite that defines NAME's task, for an adapter that is not in the "
                   "results directory of the peftbench run that trained it.")
@click.option("--combination", type=click.Choice(COMBINATIONS), default="cat", show_default=True,
              help="peft's add_weighted_adapter combination (cat: the exact weighted sum of the updates).")
@click.option("--density", type=Finite(0, 1, min_open=True), default=0.5, show_default=True,
              help="Fraction kept by the ties/dare/magnitude_prune combinations.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def blend_cmd(adapters, weights, tasks, combination, density, as_json) -> None:
    """Blend LoRA adapters at several weights and score every blend on every adapter's own task."""
    import json

    from rich.table import Table

    task_files = {name: Path(v) for name, v in _pairs(tasks, "--task")}
    import math

    weight_sets = []
    for w in weights:
        try:
            numbers = [float(x) for x in w.split(",")]
        except ValueError:
            raise PeftbenchError(f"--weights {w!r}: expected comma-separated numbers") from None
        if not all(math.isfinite(x) for x in numbers):
            raise PeftbenchError(f"--weights {w!r}: every weight must be a finite number")
        weight_sets.append(numbers)
    from .blend import blend, source_from

    sources = [source_from(name, path, task_files.get(name)) for name, path in _pairs(adapters, "--adapter")]
    unknown = set(task_files) - {s.name for s in sources}
    if unknown:
        raise PeftbenchError(f"--task names an adapter that is not given: {', '.join(sorted(unknown))}")
    rows = blend(sources, weight_sets, combination, density)
    if as_json:
        click.echo(json.dumps({"combination": combination, "blends": [r.__dict__ for r in rows]}))
        return
    table = Table(title=f"blends ({combination}): each adapter's task scored at every weight set",
                  title_justify="left", header_style="bold")
    for s in sources:
        table.add_column(f"w {s.name}", justify="right")
    for s in sources:
        table.add_column(f"{s.name}: perplexity", justify="right")
        table.add_column(f"{s.name}: exact match", justify="right")
    for r in rows:
        table.add_row(*(f"{r.weights[s.name]:g}" for s in sources),
                      *(x for s in sources for x in (f"{r.scores[s.name]['perplexity']:,.2f}",
                                                     f"{r.scores[s.name]['exact_match']:.3f}")))
    out.print(table)


class _progress:
    """Rich live progress on a terminal; otherwise (CI logs, pipes) a line when a run starts and ends, and a
    heartbeat line while it runs, every PEFTBENCH_HEARTBEAT_S seconds (30 by default)."""

    def __enter__(self):
        import os
        import time

        self.clock = time.monotonic
        self.every = float(os.environ.get("PEFTBENCH_HEARTBEAT_S", "30"))
        self.last_beat = self.clock()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from .runner import Progress as Hooks

        self.live = err.is_terminal
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err,
                            disable=not self.live)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}  # a bar per run in progress (several with --parallel)
        self.phases: dict[str, str] = {}
        return Hooks(run_started=self.started, event=self.event, run_finished=self.finished, run_kept=self.kept,
                     run_retried=self.retried)

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def started(self, plan, i, n):
        self.tasks[plan.key] = self.bar.add_task(f"[{i}/{n}] {plan.key}", total=None, info="starting")
        if not self.live:
            err.print(f"[{i}/{n}] {plan.key}: started", highlight=False)

    def event(self, plan, ev):
        task = self.tasks.get(plan.key)
        if task is None:
            return
        if ev.get("event") == "phase":
            self.phases[plan.key] = ev["phase"]
            self.bar.update(task, info=ev["phase"], total=ev.get("steps") or self.bar.tasks[task].total)
        elif ev.get("event") == "step":
            self.bar.update(task, completed=ev["step"], total=ev["steps"], info=f"train loss {ev['loss']:.4f}")
        if not self.live and self.clock() - self.last_beat >= self.every:
            self.last_beat = self.clock()
            step = ""
            if ev.get("event") == "step":
                step = f", step {ev['step']}/{ev['steps']}, train loss {ev['loss']:.4f}"
            err.print(f"{plan.key}: {self.phases.get(plan.key) or 'starting'}{step}", highlight=False)

    def finished(self, plan, record):
        task = self.tasks.pop(plan.key, None)
        if task is not None:
            self.bar.update(task, info=record.status)
            self.bar.stop_task(task)
        line = f"{plan.key}: {record.status}"
        if record.status == "ok":
            line += f" ({record.wall_s:.0f} s)" if record.wall_s else ""
        elif record.error:
            line += f": {record.error} (its log: logs/{plan.key}.log)"
        if not self.live or record.status != "ok":
            err.print(line, highlight=False)

    def kept(self, plan, record):
        err.print(f"{plan.key}: kept from the earlier run ({record.status})", highlight=False)

    def retried(self, plan, record):
        err.print(f"{plan.key}: run again (the earlier run was {record.status}: {record.error})", highlight=False)
