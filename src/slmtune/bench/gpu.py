"""The GPU decode check: a Phi-3-mini-shaped random model as int4 for CUDA, batch-1 speed vs the bandwidth limit.

The model is built like every bench model (`prepare` materialises it: random weights of
Phi-3-mini's shape, hidden 3072 and 32 layers, no download) and converted by `export.build_onnx`
for the CUDA execution provider. Decoding one token reads every weight once, so memory bandwidth
over the weights' size bounds batch-1 decode speed (H200: 4.8 TB/s over ~2.2 GB, ~2,200 tokens/s).
On a CPU machine, `--gpu-model tiny_phi3 --gpu-provider cpu` runs the same code in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
from pathlib import Path
from typing import Any

from slmtune.bench import inference
from slmtune.bench.models import Workspace, describe, prepare_base
from slmtune.bench.timing import Progress
from slmtune.errors import HardwareError

H200_BANDWIDTH_TB_S = 4.8


@dataclasses.dataclass
class GpuSettings:
    """What the GPU decode check builds and measures."""

    model: str = "bench_phi3_mini"  # a conf/model entry of random weights (source: tiny)
    provider: str = "cuda"  # the builder's and ONNX Runtime GenAI's execution provider
    prompt_tokens: int = 512
    new_tokens: int = 128
    repetitions: int = 5
    warmup: int = 1
    bandwidth_tb_s: float = H200_BANDWIDTH_TB_S


def check_provider(provider: str) -> None:
    """Refuse, before building anything, a provider this ONNX Runtime GenAI cannot run."""
    from slmtune.ortgenai import onnxruntime_genai

    og = onnxruntime_genai()

    if provider == "cuda" and not og.is_cuda_available():
        raise HardwareError(
            "--gpu-provider cuda: this onnxruntime-genai has no CUDA support (or no GPU is visible); install "
            "onnxruntime-genai-cuda on a machine with an NVIDIA GPU, or use --gpu-provider cpu for a dry run"
        )


def gpu_name() -> str | None:
    """The GPU's name as nvidia-smi reports it, or None."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def run_gpu_decode(settings: GpuSettings, workdir: Path) -> dict[str, Any]:
    """Build the model, measure prompt and decode tokens/second at batch 1, and compare with the limit."""
    import numpy as np

    from slmtune.config import compose
    from slmtune.environment import set_up_process
    from slmtune.models import load_tokenizer
    from slmtune.stages.build_int4 import build

    check_provider(settings.provider)
    progress = Progress(3)
    workspace = Workspace(workdir)
    params = compose([f"model={settings.model}"])
    set_up_process(params.hw.cpu_isa, params.hw.num_threads)
    out = workspace.folder("onnx_int4")
    with progress.step(f"prepare: a random {settings.model}-shaped Phi-3"):
        prepare_base(workspace, params)
    with progress.step(f"build: int4 ONNX for the {settings.provider} execution provider"):
        hw = dataclasses.replace(params.hw, execution_provider=settings.provider)
        build(dataclasses.replace(params, hw=hw), workspace.base, out)
    vocabulary = len(load_tokenizer(workspace.base))
    prompt = np.random.default_rng(params.seed).integers(5, vocabulary, settings.prompt_tokens).tolist()
    with progress.step(f"generate: {settings.prompt_tokens}-token prompt, {settings.new_tokens} new tokens, batch 1"):
        measured = inference.generation(
            {"onnx_int4": inference.genai_generation(out)},
            prompt,
            settings.new_tokens,
            settings.warmup,
            settings.repetitions,
        )["onnx_int4"]
    weights = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith("model.onnx"))
    limit = settings.bandwidth_tb_s * 1e12 / weights
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "gpu": gpu_name(),
        "settings": dataclasses.asdict(settings),
        "model": describe(workspace.base),
        "build": dataclasses.asdict(params.build),
        **measured,
        "weights_bytes": weights,
        "bandwidth_limit_tokens_per_s": round(limit, 1),
        "decode_share_of_limit": round(measured["decode_tokens_per_s"]["median"] / limit, 4),
    }
