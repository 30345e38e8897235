"""Model folders: materialise the base model (tiny, hub, local) and load models and tokenizers."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from slmtune.config import HwConfig, ModelConfig
from slmtune.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors",)
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]


def torch_dtype(name: str):
    """Map a profile's dtype name to a torch dtype."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def materialise_base(model_cfg: ModelConfig, texts: Iterable[str], seed: int, out_dir: Path) -> None:
    """Write the base model and tokenizer into `out_dir` from the source the model config names."""
    if model_cfg.source == "tiny":
        from slmtune.tiny_model import write_tiny_base

        write_tiny_base(model_cfg, texts, seed, out_dir)
    elif model_cfg.source == "hub":
        _download_from_hub(model_cfg, out_dir)
    else:
        _copy_local(Path(str(model_cfg.local_path)), out_dir)
    if model_cfg.chat_template and model_cfg.source != "tiny":
        tokenizer = load_tokenizer(out_dir, model_cfg.trust_remote_code)
        tokenizer.chat_template = model_cfg.chat_template
        tokenizer.save_pretrained(out_dir)
    check_model_folder(out_dir)


def _download_from_hub(model_cfg: ModelConfig, out_dir: Path) -> None:
    """Download a pinned revision of a hub model (safetensors only, no remote code unless asked)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [*HUB_PATTERNS, "*.py"] if model_cfg.trust_remote_code else HUB_PATTERNS
    try:
        snapshot_download(
            repo_id=str(model_cfg.hub_id),
            revision=model_cfg.revision,
            local_dir=out_dir,
            allow_patterns=patterns,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise ModelError(
            f"cannot download {model_cfg.hub_id}@{model_cfg.revision}: {err}. "
            "Check the network and HF_TOKEN, or point model.source=local at a downloaded folder."
        ) from None
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)


def _copy_local(source: Path, out_dir: Path) -> None:
    if not source.is_dir():
        raise ModelError(f"model.local_path {source}: not a folder")
    for item in source.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, out_dir / item.name)


def check_model_folder(folder: Path | str) -> None:
    """A PyTorch model folder needs config.json and safetensors weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: no config.json; not a Hugging Face model folder")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise ModelError(f"{folder}: no .safetensors weights (pickle .bin weights are not loaded)")


def load_tokenizer(folder: Path | str, trust_remote_code: bool = False):
    """Load the tokenizer saved beside a model."""
    from transformers import AutoTokenizer

    if not Path(folder).is_dir():
        raise ModelError(f"{folder}: model folder not found")
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)


def load_causal_lm(folder: Path | str, hw: HwConfig | None = None, trust_remote_code: bool = False, quantization=None):
    """Load a causal LM from safetensors in the profile's dtype and device (optionally 4-bit), in eval mode."""
    from transformers import AutoModelForCausalLM

    check_model_folder(folder)
    dtype = torch_dtype(hw.dtype) if hw else torch_dtype("float32")
    device = hw.device if hw else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        str(folder),
        dtype=dtype,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        quantization_config=quantization,
        device_map={"": device} if quantization is not None else None,
    )
    if quantization is None and device == "cuda":
        model = model.to("cuda")
    return model.eval()


def folder_size_bytes(*folders: Path | str) -> int:
    """Total size on disk of every file under the folders."""
    return sum(p.stat().st_size for folder in folders for p in Path(folder).rglob("*") if p.is_file())
