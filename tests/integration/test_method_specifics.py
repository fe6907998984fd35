"""What is particular to some methods: counts checked by hand (LoHa, LoKr, VeRA, AdaLoRA), LoKr's factorization
and the LyCORIS, VeRA and AdaLoRA default targets against peft, and AdaLoRA's schedule and training-time behaviour
on a tiny model. (Every method's counts against peft: test_counts.py.)"""

from __future__ import annotations

import pytest

from peftbench import catalog
from peftbench.arch import LORA_DEFAULTS, SUPPORTED_MODEL_TYPES, arch_from_config

from ..conftest import TINY_CAUSAL

torch = pytest.importorskip("torch")

from peftbench.exact import arch_counts, exact_counts  # noqa: E402 - after the torch skip

# ---- hand-checked counts ---------------------------------------------------------------------------------------

LLAMA2_7B_BASE = 6_738_415_616  # 6,742,609,920 with LoRA r8 on q,v (4,194,304): test_counts.py


@pytest.mark.parametrize(("settings", "trainable", "added"), [
    # q_proj and v_proj are 4096 x 4096, in 32 blocks: 64 wrapped linears
    ({"method": "loha", "ranks": [8]}, 64 * 2 * 8 * (4096 + 4096), None),  # two rank-8 pairs: twice LoRA r8
    # 4096 = 64 x 64: W1 64 x 64 (4096); 8 < 64/2, so W2 = 64 x 8 + 8 x 64 (1024)
    ({"method": "lokr", "ranks": [8]}, 64 * (64 * 64 + 2 * 8 * 64), None),
    ({"method": "vera"}, 64 * (256 + 4096), None),  # lambda_d (r) + lambda_b (d_out); A and B are buffers
    # A 12 x 4096, B 4096 x 12, E 12 x 1 trainable; ranknum (1) frozen but counted in the total
    ({"method": "adalora"}, 64 * 12 * (4096 + 4096 + 1), 64 * 12 * (4096 + 4096 + 1) + 64),
])
def test_llama_2_7b_counts_by_hand(settings, trainable, added):
    cfg = catalog.resolve("llama-2-7b").config
    added = trainable if added is None else added
    assert exact_counts(cfg, "causal_lm", settings["method"], settings) == (trainable, LLAMA2_7B_BASE + added)
    assert arch_counts(arch_from_config(cfg), settings["method"], settings) == (trainable, LLAMA2_7B_BASE + added)


def test_tiny_llama_lokr_by_hand():
    """q_proj 32 -> 32: 32 = 4 x 8 both ways, W1 4 x 4, and r = 8 is not below max(8, 8)/2, so W2 is a full 8 x 8.
    v_proj 32 -> 16: out 16 = 4 x 4, in 32 = 4 x 8: W1 4 x 4, W2 4 x 8. Two blocks."""
    model = TINY_CAUSAL["model"]
    cfg = catalog.resolve(model["name"], model["config_overrides"]).config
    s = {"method": "lokr", "ranks": [8]}
    trainable = 2 * ((4 * 4 + 8 * 8) + (4 * 4 + 4 * 8))
    assert trainable == 256
    assert exact_counts(cfg, "causal_lm", "lokr", s)[0] == arch_counts(arch_from_config(cfg), "lokr", s)[0] == trainable


def test_minilm_loha_by_hand():
    """MiniLM-L6: 6 layers, query and value 384 x 384, LoHa r4: 2 x 4 x (384 + 384) each, plus the 384 -> 2 head."""
    cfg = catalog.resolve("builtin:minilm").config
    s = {"method": "loha", "ranks": [4]}
    trainable = 6 * 2 * 2 * 4 * (384 + 384) + (384 * 2 + 2)
    assert exact_counts(cfg, "classification", "loha", s)[0] == trainable == 74_498
    assert arch_counts(arch_from_config(cfg, "classification"), "loha", s)[0] == trainable


def test_factorization_is_peft_s():
    from peft.tuners.lokr.layer import factorization as peft_factorization

    from peftbench.methods.lokr import factorization

    dims = [*range(1, 700), 896, 1536, 2048, 2560, 3072, 3584, 4096, 5632, 8192, 10240, 11008, 14336, 18944]
    for factor in (-1, 1, 2, 4, 8, 16, 64, 256, 7):
        for d in dims:
            assert factorization(d, factor) == peft_factorization(d, factor), (d, factor)


def test_default_targets_are_peft_s():
    """VeRA's defaults are LoRA's except phi; AdaLoRA's are LoRA's (peft lists none for mistral and phi, where
    prepare passes LoRA's)."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as ADALORA,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LOHA_TARGET_MODULES_MAPPING as LOHA,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LOKR_TARGET_MODULES_MAPPING as LOKR,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING as VERA,
    )

    from peftbench.methods.adalora import default_targets
    from peftbench.methods.vera import VERA_DEFAULTS

    for mt in SUPPORTED_MODEL_TYPES:
        assert set(LOHA[mt]) == set(LOKR[mt]) == set(LORA_DEFAULTS[mt]), mt
        assert set(VERA[mt]) == set(VERA_DEFAULTS.get(mt, LORA_DEFAULTS[mt])), mt
        ours = default_targets(mt)
        assert set(ADALORA[mt] if ours is None else ours) == set(LORA_DEFAULTS[mt]), mt
    assert default_targets("mistral") is not None and default_targets("llama") is None


# ---- AdaLoRA's schedule and training ---------------------------------------------------------------------------


def test_adalora_schedule_is_valid_for_every_run_length():
    from peft import AdaLoraConfig

    from peftbench.methods.adalora import AdaLoraSettings, schedule

    for settings in (AdaLoraSettings(method="adalora"), AdaLoraSettings(method="adalora", tinit=0.3, tfinal=0.69)):
        for steps in range(1, 60):
            total, tinit, tfinal = schedule(settings, steps)
            assert total == steps and tinit < total - tfinal
            assert steps < 2 or total - tfinal >= 2  # a sensitivity update before the forced final mask
            AdaLoraConfig(init_r=12, target_r=8, total_step=total, tinit=tinit, tfinal=tfinal)  # peft accepts it
    assert schedule(AdaLoraSettings(method="adalora"), 5000) == (5000, 200, 500)  # peft's MetaMathQA schedule


@pytest.mark.parametrize("bad", [{"target_rank": 12}, {"init_rank": 4, "target_rank": 8},
                                 {"tinit": 0.5, "tfinal": 0.5}])
def test_adalora_settings_reject_impossible_schedules(bad):
    from pydantic import ValidationError

    from peftbench.methods.adalora import AdaLoraSettings

    with pytest.raises(ValidationError):
        AdaLoraSettings(method="adalora", **bad)


def _tiny_llama(dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(catalog.resolve("builtin:tiny-llama", TINY_CAUSAL["model"]["config_overrides"]).config)
    fields.update(vocab_size=128)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).to(dtype)


def _ctx(total_steps: int, dtype=torch.float32):
    from peftbench import tasks
    from peftbench.context import RunContext

    return RunContext(task=tasks.get("causal_lm"), device=torch.device("cpu"), precision="fp32", load_dtype=dtype,
                      compute_dtype=dtype, gradient_checkpointing=False, tokenizer_path="", total_steps=total_steps)


def test_adalora_trains_to_the_target_budget_and_evaluates_without_the_penalty():
    from peftbench import methods

    method = methods.get("adalora")
    settings = method.Settings(method="adalora", init_rank=4, target_rank=2)
    batch = {"input_ids": torch.randint(0, 128, (2, 10))}
    batch["labels"] = batch["input_ids"]
    with torch.no_grad():
        base = float(_tiny_llama(torch.float32)(**batch).loss)  # the same seeded weights, no adapter
    model = method.prepare(_tiny_llama(torch.float32), settings, _ctx(3))
    model.eval()
    with torch.no_grad():
        evaluated = float(model(**batch).loss)  # E = 0 at init: the same outputs, and no orthogonality penalty
    assert evaluated == pytest.approx(base, abs=1e-6)
    model.train()
    with torch.no_grad():
        assert float(model(**batch).loss) > base + 0.1  # training loss carries peft's penalty

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(1, 4):
        model(**batch).loss.backward()
        optimizer.step()
        method.after_optimizer_step(model, step)
        optimizer.zero_grad()
    pattern = model.peft_config["default"].rank_pattern
    assert pattern and sum(sum(kept) for kept in pattern.values()) == 2 * len(pattern)  # target_rank x modules
    model.merge_and_unload()


def test_adalora_one_step_run_and_16_bit_base_keep_ranknum_frozen():
    """A 1-step run (exact.py's default total_steps) prepares and steps without allocating; on a bf16 base peft's
    fp32 upcast would make ranknum trainable, prepare freezes it, so the count is the analytic one."""
    from peftbench import methods
    from peftbench.measure import count_parameters

    method = methods.get("adalora")
    settings = method.Settings(method="adalora")
    model = method.prepare(_tiny_llama(torch.bfloat16), settings, _ctx(1, torch.bfloat16))
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".ranknum." in n)
    cfg = dict(catalog.resolve("builtin:tiny-llama", TINY_CAUSAL["model"]["config_overrides"]).config, vocab_size=128)
    assert count_parameters(model)[0] == method.footprint(arch_from_config(cfg), settings).trainable
    batch = {"input_ids": torch.randint(0, 128, (2, 10))}
    model(**batch, labels=batch["input_ids"]).loss.backward()
    method.after_optimizer_step(model, 1)  # nothing to allocate in a 1-step run


# ---- quantized bases: placement and checkpointing (issue: the 7B comparison) -------------------------------------

def _loaded_qlora(tmp_path, monkeypatch, checkpointing: bool, dtype=torch.float32, method_name: str = "qlora"):
    """The worker's own loading and preparation of a QLoRA run (or `method_name`'s) on the tiny Llama, on the CPU;
    the kwargs that from_pretrained saw."""
    from transformers import AutoModelForCausalLM

    from peftbench import methods, models
    from peftbench.context import RunContext
    from peftbench.suite import parse_suite

    suite, runs = parse_suite({**TINY_CAUSAL, "methods": [{"method": method_name, "ranks": [4]}]})
    method = methods.get(method_name)
    settings = method.Settings.model_validate(runs[0].settings)
    path = models.model_path(suite.model, None)
    tokenizer = models.load_tokenizer(suite.model, path)
    from peftbench import tasks

    ctx = RunContext(task=tasks.get("causal_lm"), device=torch.device("cpu"),
                     precision="fp32" if dtype == torch.float32 else "bf16", load_dtype=dtype, compute_dtype=dtype,
                     gradient_checkpointing=checkpointing, tokenizer_path=path, total_steps=3)
    seen = {}
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    return models.load_prepared(suite, method, settings, ctx, path, tokenizer), seen


def test_a_cpu_qlora_run_is_placed_on_the_cpu_even_where_cuda_exists(tmp_path, monkeypatch):
    """Without a device map the bitsandbytes quantizer places the model on cuda:0 whenever CUDA exists, and a
    `device: cpu` suite fails at its first forward; the run's device is always passed."""
    model, seen = _loaded_qlora(tmp_path, monkeypatch, checkpointing=False)
    assert seen["device_map"] == {"": "cpu"}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_qlora_checkpoints_as_every_other_method_does(tmp_path, monkeypatch):
    """peft's k-bit preparation enables checkpointing again, with empty kwargs (torch's reentrant kind) unless given
    the run's: every block's checkpoint function must be the non-reentrant one."""
    model, _ = _loaded_qlora(tmp_path, monkeypatch, checkpointing=True)
    layers = model.base_model.model.model.layers
    funcs = [layer._gradient_checkpointing_func for layer in layers]
    assert funcs and all(f.keywords == {"use_reentrant": False} for f in funcs), [f.keywords for f in funcs]


def _activation_dtypes(model) -> dict[str, torch.dtype]:
    """The dtype of every block module's output (and the logits) in one training-mode forward."""
    seen: dict[str, torch.dtype] = {}
    hooks = []
    for name, module in model.named_modules():
        short = name.split("model.layers.")[-1] if "model.layers." in name else name.rsplit(".", 1)[-1]
        if "lora_" in name or "base_layer" in name or not name:
            continue

        def hook(mod, args, out, short=short):
            t = out[0] if isinstance(out, tuple) else out
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                seen[short] = t.dtype
        hooks.append(module.register_forward_hook(hook))
    ids = torch.randint(5, 100, (2, 12))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    for h in hooks:
        h.remove()
    seen["logits"] = out.logits.dtype
    return seen


def test_a_bf16_qlora_run_computes_in_bf16_as_the_lora_run_does(tmp_path, monkeypatch):
    """peft's k-bit preparation casts embeddings, norms and lm_head to fp32, so a bf16 QLoRA run computed its
    residual stream, attention and logits in fp32 while LoRA ran in bf16. It is no longer called: every
    non-quantized base weight is bf16 and every block output has the dtype it has in the bf16 LoRA run; only the
    adapters are fp32 (peft's autocast_adapter_dtype), in both."""
    qlora, _ = _loaded_qlora(tmp_path, monkeypatch, checkpointing=False, dtype=torch.bfloat16)
    lora, _ = _loaded_qlora(tmp_path, monkeypatch, checkpointing=False, dtype=torch.bfloat16, method_name="lora")
    frozen = {p.dtype for p in qlora.parameters() if not p.requires_grad and p.is_floating_point()}
    assert frozen == {torch.bfloat16}
    assert {p.dtype for p in qlora.parameters() if p.requires_grad} == {torch.float32}
    assert any(p.dtype == torch.uint8 for p in qlora.parameters())  # the 4-bit weights are there
    q, ref = _activation_dtypes(qlora), _activation_dtypes(lora)
    assert q["logits"] == torch.bfloat16 and set(q.values()) == {torch.bfloat16}, q
    assert q == ref


def test_an_fp32_qlora_run_keeps_fp32_around_the_4_bit_weights(tmp_path, monkeypatch):
    model, _ = _loaded_qlora(tmp_path, monkeypatch, checkpointing=False)
    assert {p.dtype for p in model.parameters() if p.is_floating_point()} == {torch.float32}


def test_a_16_bit_model_loads_straight_onto_the_gpu(monkeypatch):
    """A CUDA run passes a device map, so from_pretrained places the weights on the GPU as it reads them; a CPU
    load followed by .to() would first hold the whole model in host RAM (13.5 GB for 7B in bf16). Checked with
    from_pretrained replaced, so it runs without a GPU."""
    from transformers import AutoModelForCausalLM

    from peftbench import models
    from peftbench.suite import parse_suite

    suite, _ = parse_suite({**TINY_CAUSAL, "methods": [{"method": "lora", "ranks": [4]}]})
    seen, moved = {}, []

    class Loaded:
        config = type("Config", (), {"pad_token_id": 0})()

        def to(self, device):
            moved.append(device)
            return self

    def fake(cls, *args, **kwargs):
        seen.update(kwargs)
        return Loaded()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(fake))
    tokenizer = type("Tok", (), {"pad_token_id": 0})()
    models.load_model(suite.model, "unused", tokenizer, torch.bfloat16, torch.device("cuda", 1), {})
    assert seen["device_map"] == {"": 1} and moved == []
    models.load_model(suite.model, "unused", tokenizer, torch.float32, torch.device("cpu"), {})
    assert moved == [torch.device("cpu")]
