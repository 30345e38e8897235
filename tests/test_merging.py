"""Merging: the tensor-by-tensor merge gives peft's merged weights bit for bit; other adapters go through peft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmtune.config import compose
from slmtune.errors import ModelError
from slmtune.merging import merge_adapter, merge_tensors, merge_with_peft, merges_tensor_by_tensor
from slmtune.models import load_causal_lm, materialise_base

TEXTS = ["I miss you so much", "best day ever", "that noise scares me", "no way, really?"] * 20
TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
INSTRUCTION = "What is the tone?"
PHRASES = ["what a day", "I am scared"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "base"
    folder.mkdir()
    materialise_base(compose().model, TEXTS, compose().seed, folder)
    return folder


def write_adapter(base: Path, folder: Path, **options) -> Path:
    """A peft LoRA adapter on `base` with random A and B (a trained adapter's shape, not its zero B)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=24, target_modules=TARGETS, init_lora_weights=False, **options)
    model = get_peft_model(load_causal_lm(base), config)
    for name, parameter in model.named_parameters():
        if "modules_to_save" in name:  # a trained copy differs from the base's tensor
            parameter.data += 0.01 * torch.randn_like(parameter)
    model.save_pretrained(str(folder))
    return folder


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {name: t for path in sorted(folder.glob("*.safetensors")) for name, t in load_file(str(path)).items()}


def assert_same_weights(first: Path, second: Path) -> None:
    import torch

    a, b = tensors(first), tensors(second)
    assert sorted(a) == sorted(b)
    differing = [name for name in a if a[name].dtype != b[name].dtype or not torch.equal(a[name], b[name])]
    assert differing == []


@pytest.mark.parametrize(
    "options",
    [{}, {"use_rslora": True}, {"modules_to_save": ["lm_head", "embed_tokens"]}],
    ids=["lora", "rslora", "modules_to_save"],
)
def test_the_tensor_merge_gives_peft_merged_weights_bit_for_bit(tiny_base, tmp_path, options):
    adapter = write_adapter(tiny_base, tmp_path / "adapter", **options)
    (tmp_path / "tensors").mkdir()
    (tmp_path / "peft").mkdir()
    report = merge_tensors(tiny_base, adapter, tmp_path / "tensors")
    merge_with_peft(tiny_base, adapter, tmp_path / "peft", INSTRUCTION, PHRASES)
    assert report.lora_weights == 2 * len(TARGETS)
    assert report.whole_tensors == len(options.get("modules_to_save", []))
    assert_same_weights(tmp_path / "tensors", tmp_path / "peft")


def test_the_tensor_merge_keeps_the_base_shards_in_float32(tiny_base, tmp_path):
    import torch

    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_base, sharded)
    (sharded / "model.safetensors").unlink()
    load_causal_lm(tiny_base).to(torch.bfloat16).save_pretrained(str(sharded), max_shard_size=300_000)
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 1
    adapter = write_adapter(tiny_base, tmp_path / "adapter")
    for way in ("tensors", "peft"):
        (tmp_path / way).mkdir()
    merge_tensors(sharded, adapter, tmp_path / "tensors")
    merge_with_peft(sharded, adapter, tmp_path / "peft", INSTRUCTION, PHRASES)
    assert sorted(p.name for p in (tmp_path / "tensors").glob("*.safetensors")) == shards
    assert_same_weights(tmp_path / "tensors", tmp_path / "peft")
    assert json.loads((tmp_path / "tensors" / "config.json").read_text())["dtype"] == "float32"
    index = json.loads((tmp_path / "tensors" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in tensors(tmp_path / "tensors").values())
    assert load_causal_lm(tmp_path / "tensors").dtype == torch.float32  # transformers loads the folder


def test_the_merged_folder_holds_the_base_tokenizer_and_config(tiny_base, tmp_path):
    adapter = write_adapter(tiny_base, tmp_path / "adapter")
    (tmp_path / "merged").mkdir()
    merge_tensors(tiny_base, adapter, tmp_path / "merged")
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "merged" / name).read_bytes() == (tiny_base / name).read_bytes()


def test_dora_is_merged_by_peft_with_its_logit_check(tiny_base, tmp_path):
    adapter = write_adapter(tiny_base, tmp_path / "adapter", use_dora=True)
    (tmp_path / "merged").mkdir()
    report = merge_adapter(tiny_base, adapter, tmp_path / "merged", INSTRUCTION, PHRASES)
    assert report.method == "peft"
    assert report.logit_difference is not None and report.logit_difference < 1e-3


def test_plain_lora_is_merged_tensor_by_tensor_and_other_kinds_by_peft():
    plain = {"peft_type": "LORA", "use_dora": False, "rank_pattern": {}, "use_rslora": True}
    assert merges_tensor_by_tensor(plain)
    for option in ({"use_dora": True}, {"rank_pattern": {"o_proj": 4}}, {"fan_in_fan_out": True}):
        assert not merges_tensor_by_tensor({**plain, **option})
    assert not merges_tensor_by_tensor({**plain, "peft_type": "IA3"})


def test_an_adapter_for_another_base_is_refused_naming_both_folders(tiny_base, tmp_path):
    adapter = write_adapter(tiny_base, tmp_path / "adapter")
    other = tmp_path / "other"
    other.mkdir()
    materialise_base(compose(["model.tiny.hidden_size=64"]).model, TEXTS, 0, other)
    (tmp_path / "merged").mkdir()
    with pytest.raises(ModelError, match=rf"adapter {adapter} does not fit the base model {other} \(size mismatch"):
        merge_tensors(other, adapter, tmp_path / "merged")
