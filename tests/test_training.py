"""Training runs anywhere: several processes, and resumption after a SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from helpers import ROOT, sh, tool_env

pytestmark = pytest.mark.slow
CHECKPOINT_STEP = 40


def write_params(workspace: Path, name: str, **overrides) -> Path:
    """params.yaml with one epoch, frequent checkpoints, and `overrides` as dotted keys."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    settings = {"train.num_train_epochs": 1.0, "train.save_steps": 20, **overrides}
    for dotted, value in settings.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path = workspace / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def train_command(params: Path, out: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "slmtune.stages.train_lora",
        "--params",
        str(params),
        "--out",
        out,
        "--metrics",
        f"{out}.json",
        "--run-metrics",
        f"{out}_run.json",
        "--live",
        f"{out}-live",
    ]


def tensors(folder: Path) -> dict:
    return load_file(folder / "adapter_model.safetensors")


def test_two_cpu_processes_train_and_only_one_writes(prepared_workspace):
    params = write_params(
        prepared_workspace, "ddp.yaml", **{"hw.launcher": "torchrun", "hw.num_processes": 2, "hw.num_threads": 1}
    )
    before = set(os.listdir(prepared_workspace))
    result = sh(train_command(params, "ddp"), prepared_workspace)
    assert "process 0 of 2" in result.stdout and "process 1 of 2" in result.stdout
    metrics = json.loads((prepared_workspace / "ddp.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["final_train_loss"] < 0.5 * 7.6  # from ln(vocab) ~ 7.6 at random init
    assert set(os.listdir(prepared_workspace)) - before - {".slmtune-cache"} == {
        "ddp",
        "ddp.json",
        "ddp_run.json",
        "ddp-live",
    }
    assert (prepared_workspace / "ddp/adapter_model.safetensors").is_file()
    assert not list((prepared_workspace / ".slmtune-cache/train_lora").iterdir())


def test_a_killed_run_resumes_to_the_same_adapter(prepared_workspace):
    # 86 steps, checkpoints at 40 and 80: the kill lands between them, 0.5 s (about 15 steps) after the first.
    params = write_params(
        prepared_workspace, "resume.yaml", **{"train.num_train_epochs": 0.8, "train.save_steps": CHECKPOINT_STEP}
    )
    sh(train_command(params, "whole"), prepared_workspace)
    cache = prepared_workspace / ".slmtune-cache/train_lora"
    process = subprocess.Popen(
        train_command(params, "killed"),
        cwd=prepared_workspace,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list(cache.glob(f"*/checkpoint-{CHECKPOINT_STEP}/trainer_state.json")):
        assert process.poll() is None, "training ended before the checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # kill mid-way between checkpoints
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(cache.glob(f"*/checkpoint-{2 * CHECKPOINT_STEP}")), "killed after the next checkpoint"
    assert not (prepared_workspace / "killed").exists()
    checkpoint = next(cache.glob(f"*/checkpoint-{CHECKPOINT_STEP}"))
    cut_short_while_saving(checkpoint, 2 * CHECKPOINT_STEP)
    result = sh(train_command(params, "killed"), prepared_workspace)
    assert f"checkpoint-{2 * CHECKPOINT_STEP} was cut short while it was saved" in result.stdout
    assert f"resuming from {checkpoint.relative_to(prepared_workspace)}\n" in result.stdout
    assert_same_run(prepared_workspace, "killed", "whole")
    run = json.loads((prepared_workspace / "killed_run.json").read_text())
    assert run["resumed_from_step"] >= CHECKPOINT_STEP and run["tokens_per_second"] > 0
    assert json.loads((prepared_workspace / "whole_run.json").read_text())["resumed_from_step"] == 0


def test_a_run_killed_after_its_last_checkpoint_trains_no_further(prepared_workspace):
    """A fractional epoch ends on a checkpoint; resuming from it must not train a step more (transformers does)."""
    params = write_params(prepared_workspace, "finished.yaml", **{"train.num_train_epochs": 0.3})  # 33 steps
    sh(train_command(params, "whole"), prepared_workspace)
    # The checkpoints a process leaves when it dies after its last one, before writing the outputs.
    leave_checkpoints = (
        "from pathlib import Path\n"
        "from slmtune.checkpoints import checkpoint_dir\n"
        "from slmtune.stages.common import stage_params\n"
        "from slmtune.training import train_adapter\n"
        f"params = stage_params({str(params)!r})\n"
        "data, base = Path('data/prepared'), Path('models/base')\n"
        "train_adapter(params, base, data, checkpoint_dir(params, data, base), adapter_dir=None)\n"
    )
    sh([sys.executable, "-c", leave_checkpoints], prepared_workspace)
    assert list((prepared_workspace / ".slmtune-cache/train_lora").glob("*/checkpoint-33"))
    result = sh(train_command(params, "finished"), prepared_workspace)
    assert "nothing left to train" in result.stdout
    assert_same_run(prepared_workspace, "finished", "whole")
    assert json.loads((prepared_workspace / "finished_run.json").read_text())["resumed_from_step"] == 33


def cut_short_while_saving(checkpoint: Path, step: int) -> None:
    """Leave what a kill in the middle of writing files leaves: a next checkpoint whose state is cut
    off half-way (the Trainer writes it last), and dvclive's summary cut off likewise."""
    torn = checkpoint.with_name(f"checkpoint-{step}")
    shutil.copytree(checkpoint, torn)
    state = (torn / "trainer_state.json").read_text()
    (torn / "trainer_state.json").write_text(state[: len(state) // 2])
    summary = checkpoint.parent / "live/metrics.json"
    summary.write_text(summary.read_text()[:10])


def assert_same_run(workspace: Path, resumed: str, uninterrupted: str) -> None:
    """The same adapter, the same dvclive log, and metrics that describe the whole run, not just the
    steps after the resume."""
    first, second = tensors(workspace / uninterrupted), tensors(workspace / resumed)
    assert first.keys() == second.keys()
    assert all(bool((first[name] == second[name]).all()) for name in first)
    whole = json.loads((workspace / f"{uninterrupted}.json").read_text())
    metrics = json.loads((workspace / f"{resumed}.json").read_text())
    for key in ("steps", "train_tokens", "eval_loss", "final_train_loss"):
        assert metrics[key] == whole[key], key
    assert metrics["train_loss"] == pytest.approx(whole["train_loss"], abs=1e-5)
    assert folder_contents(workspace / f"{resumed}-live") == folder_contents(workspace / f"{uninterrupted}-live")


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def run_gpu_check(results: Path, **settings: str) -> subprocess.CompletedProcess:
    """scripts/gpu_check.sh with this interpreter, no carried wheels, results into `results`."""
    settings = {"PY": sys.executable, "WHEELS": str(results / "no-wheels"), "RESULTS": str(results), **settings}
    return subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_check.sh")],
        env={**tool_env(), **settings},
        capture_output=True,
        text=True,
        check=False,
    )


def test_gpu_check_script_dry_runs_every_method_on_a_random_model(tmp_path):
    """scripts/gpu_check.sh, the prepared GPU check, on a tiny random model on the CPU."""
    result = run_gpu_check(tmp_path, MODEL="tiny_phi3", HW="cpu", METHODS="lora qlora dora", STEPS="2", SEQ_LEN="32")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bitsandbytes" in result.stdout  # the versions it runs with
    results = json.loads((tmp_path / "train_memory.json").read_text())
    for method in ("lora", "qlora", "dora"):
        assert results[method]["method"] == method
        assert results[method]["tokens_per_second"] > 0
        assert results[method]["peak_memory_mb"] > 0
        assert 0 < results[method]["trainable_parameters"] < results[method]["total_parameters"]
    assert results["qlora"]["total_parameters"] < results["lora"]["total_parameters"]  # 4-bit weights pack two per byte
    assert results["qlora_over_lora_peak_memory"] > 0


def test_gpu_check_without_a_gpu_stops_before_drawing_a_model(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check would run")
    result = run_gpu_check(tmp_path)
    assert result.returncode == 1
    assert "train_memory: hw=cuda needs CUDA" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "train_memory.json").exists()


def test_the_cpu_isa_pin_overrides_the_callers_kernel_settings(prepared_workspace):
    """hw.cpu_isa=avx2 caps ATen, MKL and oneDNN whatever the environment says; without it, they decide."""
    short = {"train.num_train_epochs": 0.1}
    pinned = write_params(prepared_workspace, "pinned.yaml", **short)
    plain = sh(train_command(pinned, "plain"), prepared_workspace)
    outer = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    overridden = sh(train_command(pinned, "outer"), prepared_workspace, extra_env=outer)
    assert "ATen kernels AVX2" in plain.stdout and "ATen kernels AVX2" in overridden.stdout
    first, second = tensors(prepared_workspace / "plain"), tensors(prepared_workspace / "outer")
    assert all(bool((first[name] == second[name]).all()) for name in first)
    unpinned = write_params(prepared_workspace, "unpinned.yaml", **short, **{"hw.cpu_isa": None})
    result = sh(train_command(unpinned, "unpinned"), prepared_workspace, extra_env={"ATEN_CPU_CAPABILITY": "default"})
    assert "ATen kernels DEFAULT" in result.stdout
    other = tensors(prepared_workspace / "unpinned")
    assert any(not bool((first[name] == other[name]).all()) for name in first)


LEFT_OUT_CHECK = """
import sys
from slmtune.stages.common import stage_params
stage_params("params.yaml", scipy=sys.argv[1] == "scipy")
import peft, transformers.trainer, trl
from transformers.utils import is_scipy_available
print(sorted(name for name in ("scipy", "bitsandbytes") if sys.modules.get(name)), is_scipy_available())
if sys.argv[1] == "scipy":
    from sklearn.metrics import f1_score
"""


@pytest.mark.parametrize(("stage", "loaded"), [("train", "[] False"), ("scipy", "['scipy'] True")])
def test_a_stage_loads_neither_scipy_nor_bitsandbytes_unless_it_computes_with_them(stage, loaded):
    """peft imports bitsandbytes and transformers scipy.optimize wherever they are installed; only QLoRA
    and eval's metrics compute with them, and every other stage starts faster without them."""
    result = sh([sys.executable, "-c", LEFT_OUT_CHECK, stage], ROOT)
    assert result.stdout.strip().splitlines()[-1] == loaded


COLLECTOR_CHECK = """
import gc, sys, weakref
from slmtune.environment import import_without_collector

class Node:
    pass

before = Node(); before.self = before; before.payload = bytearray(10**7)  # a cycle: garbage only to the collector
gone = weakref.ref(before); del before
passes = []
gc.callbacks.append(lambda phase, info: passes.append(phase) if phase == "start" else None)
import_without_collector("transformers.modeling_utils")
gc.callbacks.clear()
frozen = gc.get_freeze_count()
print(len(passes), gc.isenabled(), gone() is None, frozen > 100_000, "transformers.modeling_utils" in sys.modules)
import_without_collector("transformers.modeling_utils")  # imported already: nothing collected or frozen
print(gc.get_freeze_count() == frozen)
gc.disable()
import_without_collector("trl")
print(gc.isenabled(), gc.get_freeze_count() > frozen)
"""


def test_heavy_imports_run_without_the_cycle_collector_and_stay_frozen():
    """The stages import torch, transformers, trl and the builder with the collector paused, then freeze
    those objects so that later full passes skip them; earlier garbage is freed first, a module imported
    already costs nothing, and a caller that had the collector off finds it off."""
    result = sh([sys.executable, "-c", COLLECTOR_CHECK], ROOT)
    one_pass_first, *checks = result.stdout.split()
    assert one_pass_first == "1" and checks == ["True"] * 5 + ["False", "True"], result.stdout


LABELLED_HEAD_CHECK = """
import json, sys
from pathlib import Path
from slmtune.stages.common import stage_params
params = stage_params("params.yaml")
import torch
from trl import SFTTrainer
from slmtune.labelled_head import score_labelled_positions
from slmtune.models import load_tokenizer
from slmtune.training import load_for_training, lora_config, sft_config, training_split
data, base = Path("data/prepared"), Path("models/base")
tokenizer = load_tokenizer(base)
trainer = SFTTrainer(model=load_for_training(params, base), args=sft_config(params, Path(sys.argv[1])),
                     train_dataset=training_split(data / "train.jsonl", tokenizer, params),
                     eval_dataset=training_split(data / "val.jsonl", tokenizer, params),
                     processing_class=tokenizer, peft_config=lora_config(params))
model = trainer.model.eval()  # no dropout: both passes see the same network
batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
def outputs():
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads
full, full_grads = outputs()
assert score_labelled_positions(model)
labelled, labelled_grads = outputs()
print(json.dumps({
    "loss": [full.loss.item(), labelled.loss.item()],
    "entropy": [full.entropy.sum().item(), labelled.entropy.sum().item()],
    "top1": [int(full.is_top1.sum()), int(labelled.is_top1.sum())],
    "labels": [int(full.label_mask.sum()), int(labelled.label_mask.sum())],
    "grad_error": max(float((full_grads[n] - labelled_grads[n]).abs().max()) for n in full_grads),
    "grad_scale": max(float(g.abs().max()) for g in full_grads.values()),
}))
"""


def test_the_labelled_head_gives_trls_loss_metrics_and_gradients(prepared_workspace):
    """Scoring only the labelled positions changes where the head computes, not what it computes."""
    result = sh([sys.executable, "-c", LABELLED_HEAD_CHECK, "checkpoints"], prepared_workspace)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["loss"][1] == pytest.approx(figures["loss"][0], rel=1e-5)
    assert figures["entropy"][1] == pytest.approx(figures["entropy"][0], rel=1e-4)
    assert figures["top1"][0] == figures["top1"][1] and figures["labels"][0] == figures["labels"][1] > 0
    assert figures["grad_error"] <= 1e-5 * max(1.0, figures["grad_scale"])


@pytest.mark.parametrize("kernel", ["eager", "sdpa"])
def test_training_loads_the_base_with_the_profiles_attention_kernel(tmp_path, kernel):
    """hw.attn_implementation picks transformers' attention for training (eager is faster on short CPU rows)."""
    from slmtune.config import compose
    from slmtune.models import materialise_base
    from slmtune.training import load_for_training

    params = compose([f"hw.attn_implementation={kernel}"])
    base = tmp_path / "base"
    base.mkdir()
    materialise_base(params.model, ["what a day", "I am scared of the dark"] * 20, params.seed, base)
    assert load_for_training(params, base).config._attn_implementation == kernel
