"""The GPU decode check: a Phi-3-mini-shaped random model as int4 for CUDA, batch-1 speed vs the bandwidth limit.

The model is built like every bench model (`prepare` materialises it: random weights of
Phi-3-mini's shape, hidden 3072 and 32 layers, no download) and converted by `export.build_onnx`
for the CUDA execution provider. Decoding one token reads every weight once, so memory bandwidth
over the weights' size bounds batch-1 decode speed (H200: 4.8 TB/s over ~2.2 GB, ~2,200 tokens/s).
On a CPU machine, `--gpu-shape tiny --gpu-provider cpu` runs the same code in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
from pathlib import Path
from typing import Any

from slmtune.bench import inference
from slmtune.bench.models import Workspace, compose_params, describe, prepare_base
from slmtune.bench.timing import Progress
from slmtune.errors import HardwareError
from slmtune.train_memory import SHAPES

H200_BANDWIDTH_TB_S = 4.8


@dataclasses.dataclass
class GpuSettings:
    """What the GPU decode check builds and measures."""

    shape: str = "phi3_mini"  # a shape of slmtune.train_memory.SHAPES
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

    from slmtune.export import build_onnx, check_buildable
    from slmtune.models import load_tokenizer
    from slmtune.stages.common import go_offline

    if settings.shape not in SHAPES:
        raise HardwareError(f"--gpu-shape {settings.shape!r} is not one of {sorted(SHAPES)}")
    check_provider(settings.provider)
    go_offline()
    progress = Progress(3)
    workspace = Workspace(workdir)
    shape = [f"model.tiny.{key}={value}" for key, value in SHAPES[settings.shape].items()]
    params = compose_params(workspace, ["model=bench_phi3", *shape])
    out = workspace.folder("onnx_int4")
    with progress.step(f"prepare: a random {settings.shape}-shaped Phi-3"):
        prepare_base(workspace, params)
    with progress.step(f"build: int4 ONNX for the {settings.provider} execution provider"):
        check_buildable(workspace.base)
        hw = dataclasses.replace(params.hw, execution_provider=settings.provider)
        build_onnx(workspace.base, out, dataclasses.replace(params.build, precision="int4"), hw)
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
