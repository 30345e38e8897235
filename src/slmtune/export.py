"""Build an int4 ONNX model for ONNX Runtime GenAI with its model builder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from slmtune.config import BuildConfig, HwConfig
from slmtune.errors import ModelError

BUILDER = "onnxruntime_genai.models.builder"


def builder_command(merged_dir: Path, out_dir: Path, cache_dir: Path, build: BuildConfig, hw: HwConfig) -> list[str]:
    """The model builder's command line for `build.*` under the profile's execution provider."""
    options = {
        "block_size": build.block_size,
        "accuracy_level": build.accuracy_level,
        "is_symmetric": str(build.symmetric).lower(),
        "hf_token": "false",
    }
    return [
        sys.executable,
        "-m",
        BUILDER,
        "-i",
        str(merged_dir),
        "-o",
        str(out_dir),
        "-p",
        build.precision,
        "-e",
        hw.execution_provider,
        "-c",
        str(cache_dir),
        "--extra_options",
        *[f"{key}={value}" for key, value in options.items()],
    ]


def build_onnx(merged_dir: Path, out_dir: Path, build: BuildConfig, hw: HwConfig) -> None:
    """Run the builder into `out_dir`, then tune its runtime settings for this profile."""
    with tempfile.TemporaryDirectory(prefix="slmtune-builder-cache-") as cache:
        command = builder_command(merged_dir, out_dir, Path(cache), build, hw)
        print("[slmtune] running:", " ".join(command[1:]), flush=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        completed = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise ModelError(f"the onnxruntime-genai model builder failed (exit {completed.returncode}):\n{tail}")
    set_intra_op_threads(out_dir / "genai_config.json", hw.num_threads or os.cpu_count() or 1)


def set_intra_op_threads(config_path: Path, threads: int) -> None:
    """Set the decoder's intra-op thread count (the default leaves small machines half idle)."""
    config = json.loads(config_path.read_text())
    session = config["model"]["decoder"].setdefault("session_options", {})
    session["intra_op_num_threads"] = threads
    config_path.write_text(json.dumps(config, indent=4) + "\n")


def check_onnx_folder(folder: Path) -> None:
    """Load the folder in ONNX Runtime GenAI, as a user's app would."""
    import onnxruntime_genai as og

    try:
        og.Model(str(folder))
        og.Tokenizer(og.Model(str(folder)))
    except Exception as err:  # onnxruntime-genai raises plain RuntimeError
        raise ModelError(f"{folder}: ONNX Runtime GenAI cannot load the built model: {err}") from None
