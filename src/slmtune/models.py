"""Model folders: materialise the base model (tiny, hub, local), check folders, load models and tokenizers.

Nothing runs code from a model folder unless the model config asks for it: weights load
from safetensors only (pickle files can run code when unpickled), `trust_remote_code` is
false unless `model.trust_remote_code=true` (warned about), and hub downloads are pinned to
a commit unless `model.allow_floating_revision=true`. A folder that is incomplete or damaged
is refused with a ModelError naming the folder or file and saying what to do.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slmtune.config import COMMIT_HASH, HwConfig, ModelConfig
from slmtune.environment import import_without_collector
from slmtune.errors import ModelError, RemoteCodeWarning

WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
SHARD_INDEX = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
RESTORE_HINT = "restore it (`dvc checkout` or `dvc pull`) or rerun the stage that writes it"
MAX_HEADER_BYTES = 100 * 2**20
MODEL_REFERENCE = "slmtune_model_reference.json"  # a deferred prepare's reference to a model (deferred_base.py)


def torch_dtype(name: str):
    """Map a profile's dtype name to a torch dtype."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def warn_remote_code(where: object) -> None:
    """Say loudly that code from a model folder may run (only `model.trust_remote_code=true` gets here)."""
    warnings.warn(
        f"model.trust_remote_code=true: loading {where} may run Python code shipped with the model; "
        "keep it false unless you have read that code",
        RemoteCodeWarning,
        stacklevel=3,
    )


def materialise_base(
    model_cfg: ModelConfig, texts: Iterable[str], seed: int, out_dir: Path, registry_artifact: Path | None = None
) -> None:
    """Write the base model and tokenizer into `out_dir` from the source the model config names.

    `registry_artifact` is a registry model already downloaded (by Azure ML, as a job's input).
    """
    if model_cfg.source == "tiny":
        from slmtune.tiny_model import write_tiny_base

        write_tiny_base(model_cfg, texts, seed, out_dir)
    elif model_cfg.source == "hub":
        _download_from_hub(model_cfg, out_dir)
    elif model_cfg.source == "azureml":
        _download_from_registry(model_cfg, out_dir, registry_artifact)
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

    where = f"{model_cfg.hub_id}@{model_cfg.revision}"
    if not COMMIT_HASH.fullmatch(str(model_cfg.revision)):
        warnings.warn(
            f"{where}: a floating revision (model.allow_floating_revision=true); the files may change", stacklevel=2
        )
    if model_cfg.trust_remote_code:
        warn_remote_code(where)
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
            f"cannot download {where}: {err}. "
            "Check the network and HF_TOKEN, or point model.source=local at a downloaded folder."
        ) from None
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)


def _download_from_registry(model_cfg: ModelConfig, out_dir: Path, artifact: Path | None = None) -> None:
    """A pinned version of an Azure ML registry model, from its MLflow layout, checked as a local folder is."""
    import tempfile

    from slmtune.registry_models import download, huggingface_folder, record_source, tokenizer_folder
    from slmtune.source_uris import configured_registry_model

    model = configured_registry_model(model_cfg)
    if model_cfg.trust_remote_code:
        warn_remote_code(model.uri)
    patterns = [*HUB_PATTERNS, "*.py"] if model_cfg.trust_remote_code else HUB_PATTERNS
    with tempfile.TemporaryDirectory(prefix="slmtune-registry-") as tmp:
        artifact = artifact or download(model, Path(tmp))
        folder = huggingface_folder(artifact)
        check_model_folder(folder)
        tokenizer = tokenizer_folder(artifact, folder)
        check_tokenizer_folder(tokenizer)
        for item in (*tokenizer.iterdir(), *folder.iterdir()):  # what a hub download takes: no pickles, no code
            if item.is_file() and any(fnmatch.fnmatch(item.name, pattern) for pattern in patterns):
                shutil.copy2(item, out_dir / item.name)
    record_source(model, out_dir)


def _copy_local(source: Path, out_dir: Path) -> None:
    if not source.is_dir():
        raise ModelError(f"model.local_path {source}: not a folder; point model.local_path at a model folder")
    check_model_folder(source)
    check_tokenizer_folder(source)
    for item in source.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, out_dir / item.name)


def _read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object file as a dict; `missing` is the message when the file is not there."""
    if not path.is_file():
        raise ModelError(missing)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ModelError(f"{path}: unreadable ({_first_line(err)}); {RESTORE_HINT}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object; {RESTORE_HINT}")
    return value


def read_model_config(folder: Path | str) -> dict[str, Any]:
    """A model folder's config.json as a dict."""
    return _read_json_object(Path(folder) / "config.json", f"{folder}: no config.json; not a Hugging Face model folder")


def read_adapter_config(folder: Path | str) -> dict[str, Any]:
    """A peft adapter folder's adapter_config.json as a dict."""
    return _read_json_object(
        Path(folder) / "adapter_config.json",
        f"{folder}: no adapter_config.json, so not a peft adapter folder; {RESTORE_HINT}",
    )


def check_model_folder(folder: Path | str) -> None:
    """A PyTorch model folder needs config.json and intact safetensors weights (pickle is refused)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found; {RESTORE_HINT}")
    _refuse_reference(folder)
    read_model_config(folder)
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not weights:
        raise ModelError(_no_weights_message(folder))
    _check_shard_index(folder)
    for path in weights:
        check_safetensors(path)


def _refuse_reference(folder: Path) -> None:
    """ModelError for a folder that holds a deferred prepare's reference (deferred_base.py), not weights."""
    path = folder / MODEL_REFERENCE
    if path.is_file():
        reference = json.loads(path.read_text(encoding="utf-8"))
        where = reference.get("uri") or f"{reference.get('hub_id')}@{reference.get('revision')}"
        raise ModelError(
            f"{folder}: a reference to {where} that the Azure ML job downloads (prepare ran under hw=azureml); "
            "this stage needs the weights here: run `dvc repro -f prepare` with hw=cpu or hw=cuda first"
        )


def _no_weights_message(folder: Path) -> str:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        return f"{folder}: no weights (no *.safetensors file); {RESTORE_HINT}"
    return (
        f"{folder}: only pickle weights ({', '.join(pickles)}); slmtune loads safetensors only, since unpickling "
        "can run code. Convert them once, in an environment you trust: "
        f"`AutoModelForCausalLM.from_pretrained('{folder}').save_pretrained('{folder}', safe_serialization=True)`"
    )


def _check_shard_index(folder: Path) -> None:
    index = folder / SHARD_INDEX
    if not index.is_file():
        return
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise ModelError(f"{index}: unreadable shard index ({_first_line(err)}); {RESTORE_HINT}") from None
    missing = sorted(str(name) for name in shards if not (folder / str(name)).is_file())
    if missing:
        raise ModelError(f"{folder}: weight shards missing: {', '.join(missing)}; {RESTORE_HINT}")


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's header and that the file holds every byte the header describes."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(size - 8, MAX_HEADER_BYTES):
            raise ModelError(f"{path}: truncated or corrupted safetensors file (no valid header); {RESTORE_HINT}")
        header_bytes = handle.read(length)
    try:
        header = json.loads(header_bytes)
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise ModelError(f"{path}: corrupted safetensors file (unreadable header); {RESTORE_HINT}") from None
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        raise ModelError(
            f"{path}: truncated safetensors file ({size:,} bytes; its header describes {expected:,}); {RESTORE_HINT}"
        )


def check_tokenizer_folder(folder: Path | str) -> None:
    """A folder a tokenizer loads from needs at least one tokenizer file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found; {RESTORE_HINT}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the tokenizer files of the "
            f"model it came from into it, or {RESTORE_HINT}"
        )


def check_adapter_folder(folder: Path | str) -> None:
    """A peft adapter folder needs adapter_config.json and intact safetensors weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: adapter folder not found; {RESTORE_HINT}")
    read_adapter_config(folder)
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelError(_no_weights_message(folder))
    check_safetensors(weights)


def load_tokenizer(folder: Path | str, trust_remote_code: bool = False):
    """Load the tokenizer saved beside a model."""
    check_tokenizer_folder(folder)
    if trust_remote_code:
        warn_remote_code(folder)
    import_without_collector("transformers.tokenization_utils_base")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as err:  # transformers and tokenizers raise many kinds; all mean the files are unusable
        raise ModelError(f"{folder}: cannot load the tokenizer: {_first_line(err)}; {RESTORE_HINT}") from err


def load_causal_lm(
    folder: Path | str,
    hw: HwConfig | None = None,
    trust_remote_code: bool = False,
    quantization=None,
    attn_implementation: str | None = None,
):
    """Load a causal LM from safetensors in the profile's dtype and device (optionally 4-bit), in eval mode,
    with transformers' default attention kernel unless `attn_implementation` names one."""
    check_model_folder(folder)
    if trust_remote_code:
        warn_remote_code(folder)
    import_without_collector("transformers.modeling_utils")
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(hw.dtype) if hw else torch_dtype("float32")
    device = hw.device if hw else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            quantization_config=quantization,
            device_map={"": device} if quantization is not None else None,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}),
        )
    except Exception as err:  # a damaged or mismatched folder; the cause is kept for --debug
        raise ModelError(f"{folder}: cannot load the model: {_first_line(err)}; {RESTORE_HINT}") from err
    if quantization is None and device == "cuda":
        model = model.to("cuda")
    return model.eval()


def load_adapter(model, adapter_dir: Path | str, base_dir: Path | str):
    """Apply a peft adapter to `model` (loaded from `base_dir`); refuse one trained for another base."""
    check_adapter_folder(adapter_dir)
    import_without_collector("peft")
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    except Exception as err:  # peft raises RuntimeError on shape mismatch, ValueError on missing modules
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        mismatch = next((line for line in lines if "mismatch" in line), None)
        if mismatch is None and "not found in the base model" not in str(err):
            detail = lines[0] if lines else type(err).__name__
            raise ModelError(
                f"{adapter_dir}: cannot apply the adapter to {base_dir}: {detail}; {RESTORE_HINT}"
            ) from err
        raise ModelError(
            f"the adapter {adapter_dir} does not fit the base model {base_dir} ({mismatch or lines[0]}); it was "
            "trained for another base: retrain it on this base (`dvc repro train_lora`) or use the base it was "
            "trained on"
        ) from err


def folder_size_bytes(*folders: Path | str) -> int:
    """Total size on disk of every file under the folders."""
    return sum(p.stat().st_size for folder in folders for p in Path(folder).rglob("*") if p.is_file())
