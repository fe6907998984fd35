"""Multi-process runs before anything starts (peftbench/launch.py, runner.check_launches, `run --launcher`): the
settings and run names, the launch command, the method x strategy refusals, and the one-line errors."""

from __future__ import annotations

import pytest

from peftbench import methods
from peftbench.errors import PeftbenchError
from peftbench.estimate import estimate_run
from peftbench.launch import Launch, command, refusal
from peftbench.runner import check_launches
from peftbench.suite import launch_of, load_suite

from ..conftest import assert_user_error, invoke, write_suite

DDP2 = {"processes": 2, "strategy": "ddp"}


def _suite(tmp_path, base, *entries):
    return load_suite(write_suite(tmp_path, {**base, "methods": list(entries)}))


def test_a_launched_entry_is_named_by_its_strategy_and_processes(tmp_path, tiny_causal):
    loaded = _suite(tmp_path, tiny_causal, {"method": "lora", "ranks": [4]},
                    {"method": "lora", "ranks": [4], "launch": DDP2}, {"method": "full", "launch": {"processes": 4,
                                                                                                "strategy": "fsdp"}})
    assert [r.name for r in loaded.runs] == ["lora-r4", "lora-r4-ddpx2", "full-fsdpx4"]
    assert [launch_of(r).processes for r in loaded.runs] == [1, 2, 4]
    assert loaded.launched()


def test_the_command_line_launch_applies_to_entries_without_their_own(tmp_path, tiny_causal):
    loaded = _suite(tmp_path, tiny_causal, {"method": "lora", "ranks": [4]},
                    {"method": "full", "launch": {"processes": 1}})
    with_cli = loaded.with_launch(Launch(processes=2, strategy="fsdp"))
    assert [r.name for r in with_cli.runs] == ["lora-r4-fsdpx2", "full"]  # an entry's own launch wins
    assert launch_of(with_cli.runs[0]) == Launch(processes=2, strategy="fsdp")
    assert not loaded.launched() and loaded.with_launch(Launch()) is loaded


def test_a_bad_launch_entry_names_its_key(tmp_path, tiny_causal):
    from peftbench.errors import SuiteError

    with pytest.raises(SuiteError, match=r"methods\[0\]\.launch\.strategy"):
        _suite(tmp_path, tiny_causal, {"method": "lora", "launch": {"processes": 2, "strategy": "zero9"}})
    with pytest.raises(SuiteError, match=r"methods\[0\]\.launch\.processes"):
        _suite(tmp_path, tiny_causal, {"method": "lora", "launch": {"processes": 0}})


def test_the_cpu_command_is_gloo_through_accelerate_with_a_share_of_the_cores():
    argv, env = command(Launch(processes=2), cpu=True, spec="s.json", result="r.json", cores=5)
    assert argv[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]  # --cpu would start one process
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert argv[-4:] == ["-m", "peftbench.worker", "s.json", "r.json"]
    assert env == {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "DS_ACCELERATOR": "cpu"}
    argv, env = command(Launch(processes=2), cpu=False, spec="s.json", result="r.json", cores=5)
    assert env == {} and "--multi_gpu" in argv


def test_two_launches_get_their_own_rendezvous_port():
    ports = {command(Launch(processes=2), True, "s", "r", 2)[0][9] for _ in range(5)}
    assert len(ports) > 1


def test_refused_pairs_are_the_quantized_bases_and_adalora_when_sharded_and_16_bit_under_zero():
    every = methods.load_all()

    def refused(strategy, precision="fp32"):
        launch = Launch(processes=2, strategy=strategy)
        return sorted(n for n, m in every.items() if refusal(n, m.traits, launch, precision))

    for strategy in ("fsdp", "zero2", "zero3"):
        assert refused(strategy) == ["adalora", "lora8bit", "qlora"], strategy
    assert refused("fsdp", "bf16") == ["adalora", "lora8bit", "qlora"]
    assert refused("zero3", "bf16") == sorted(every)  # DeepSpeed's own master weights: not the harness's training
    assert refused("zero2", "bf16-mixed") == ["adalora", "lora8bit", "qlora"]
    assert refused("ddp", "bf16") == [] and not any(refusal(n, m.traits, Launch()) for n, m in every.items())


def test_check_launches_refuses_what_cannot_start_here(tmp_path, tiny_causal):
    qlora = _suite(tmp_path, tiny_causal, {"method": "qlora", "ranks": [4], "launch": {"processes": 2,
                                                                                      "strategy": "fsdp"}})
    with pytest.raises(PeftbenchError, match="run qlora-r4-fsdpx2: qlora with fsdp: .*use ddp"):
        check_launches(qlora, cpu=True, cores=lambda: 2)
    lora = _suite(tmp_path, tiny_causal, {"method": "lora", "ranks": [4], "launch": {"processes": 3}})
    with pytest.raises(PeftbenchError, match="3 processes, one core each, and this machine has 2 cores"):
        check_launches(lora, cpu=True, cores=lambda: 2)
    with pytest.raises(PeftbenchError, match="3 processes, one GPU each, and this machine has 1 GPUs"):
        check_launches(lora, cpu=False, ids=lambda: ["0"])
    check_launches(lora, cpu=False, ids=lambda: ["0", "1", "2"])
    saving = {**tiny_causal, "runner": {**tiny_causal["runner"], "save_adapters": True}}
    with pytest.raises(PeftbenchError, match="save_adapters: a multi-process run does not save its adapter"):
        check_launches(_suite(tmp_path, saving, {"method": "lora", "launch": DDP2}), cpu=True, cores=lambda: 2)


def test_the_estimate_of_a_launched_run_is_per_process(tmp_path, tiny_causal):
    loaded = _suite(tmp_path, tiny_causal, {"method": "full"}, {"method": "full", "launch": {"processes": 2,
                                                                                           "strategy": "fsdp"}})
    one, two = (estimate_run(loaded.resolved(), r.method, r.settings, device="cpu") for r in loaded.runs)
    assert two.breakdown["optimizer_states"] == pytest.approx(one.breakdown["optimizer_states"] / 2)
    assert two.peak_bytes < one.peak_bytes


@pytest.mark.parametrize("args, fragment", [
    (["--num-processes", "2"], "--num-processes needs --launcher accelerate"),
    (["--strategy", "fsdp"], "--strategy needs --launcher accelerate"),
    (["--launcher", "accelerate"], "--launcher accelerate needs --num-processes"),
    (["--launcher", "accelerate", "--num-processes", "2", "--parallel", "2"], "multi-process runs with --parallel"),
])
def test_run_launcher_options_are_checked_first(tmp_path, tiny_causal, args, fragment):
    path = write_suite(tmp_path, tiny_causal)
    assert_user_error(invoke("run", path, "--results-dir", tmp_path / "r", *args), fragment)
    assert not (tmp_path / "r").exists()  # nothing ran, no folder was made


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    return str(path)


def test_an_accelerate_config_file_gives_processes_and_strategy(tmp_path):
    from peftbench.launch import from_config_file

    fsdp = _config(tmp_path, "distributed_type: FSDP\nfsdp_config:\n  fsdp_version: 2\nnum_processes: 4\n"
                             "mixed_precision: 'no'\nnum_machines: 1\n")
    launch = from_config_file(fsdp)
    assert (launch.processes, launch.strategy, launch.config_file) == (4, "fsdp", fsdp)
    argv, _ = command(launch, cpu=False, spec="s", result="r", cores=2)
    assert argv[argv.index("--config_file") + 1] == fsdp  # its GPU ids reach accelerate launch
    assert from_config_file(_config(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: 2\n")).strategy == "ddp"
    zero = from_config_file(_config(tmp_path, "distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 3\n"
                                              "num_processes: 2\n"))
    assert (zero.strategy, zero.config_file) == ("zero3", None)  # read, not passed on (see from_config_file)


@pytest.mark.parametrize("text, fragment", [
    ("distributed_type: DEEPSPEED\nnum_processes: 2\n", "ZeRO stage 2 or 3"),
    ("distributed_type: DEEPSPEED\ndeepspeed_config: {zero_stage: 3, offload_param_device: cpu}\nnum_processes: 2\n",
     "offload"),
    ("distributed_type: FSDP\nnum_processes: 2\n", "FSDP version 1"),
    ("distributed_type: FSDP\nfsdp_config: {fsdp_version: 2, fsdp_offload_params: true}\nnum_processes: 2\n",
     "fsdp_offload_params"),
    ("distributed_type: MULTI_GPU\nnum_processes: 2\nmixed_precision: bf16\n", "training.precision decides it"),
    ("distributed_type: MULTI_GPU\nnum_processes: 8\nnum_machines: 2\n", "one run spans one machine"),
    ("distributed_type: MULTI_GPU\nnum_processes: 1\n", "needs 2 or more"),
    ("distributed_type: XLA\nnum_processes: 2\n", "distributed_type XLA"),
    ("- a list\n", "expected a mapping"),
])
def test_a_config_file_peftbench_cannot_honour_is_one_line(tmp_path, text, fragment):
    from peftbench.launch import from_config_file

    with pytest.raises(PeftbenchError, match=fragment):
        from_config_file(_config(tmp_path, text))


def test_config_file_excludes_num_processes_and_needs_the_launcher(tmp_path, tiny_causal):
    path = write_suite(tmp_path, tiny_causal)
    cfg = _config(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: 2\n")
    assert_user_error(invoke("run", path, "--config-file", cfg), "--config-file needs --launcher accelerate")
    assert_user_error(invoke("run", path, "--launcher", "accelerate", "--config-file", cfg, "--num-processes", "2"),
                      "--config-file and --num-processes: the config file gives the processes")


def test_validate_refuses_a_pair_that_cannot_run(tmp_path, tiny_causal):
    suite = {**tiny_causal, "methods": [{"method": "adalora", "launch": {"processes": 2, "strategy": "zero3"}}]}
    assert_user_error(invoke("validate", write_suite(tmp_path, suite)), "run adalora-zero3x2: adalora with zero3")
