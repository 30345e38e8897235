"""Materialising the base model: tiny, local folder and hub, through the same loading code."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers import tool_env
from slmtune.config import compose
from slmtune.errors import ModelError
from slmtune.models import (
    check_adapter_folder,
    check_model_folder,
    check_safetensors,
    load_causal_lm,
    load_tokenizer,
    materialise_base,
)

TEXTS = ["I miss you so much", "best day ever", "that noise scares me", "no way, really?"] * 20


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    params = compose()
    folder = tmp_path_factory.mktemp("tiny") / "base"
    folder.mkdir()
    materialise_base(params.model, TEXTS, params.seed, folder)
    return folder


def test_tiny_base_is_a_phi3_with_its_tokenizer(tiny_base):
    model = load_causal_lm(tiny_base)
    tokenizer = load_tokenizer(tiny_base)
    assert type(model).__name__ == "Phi3ForCausalLM"
    assert model.config.vocab_size == len(tokenizer)
    assert (tiny_base / "model.safetensors").is_file()


def test_tiny_base_is_deterministic_for_a_seed(tiny_base, tmp_path):
    params = compose()
    again = tmp_path / "again"
    again.mkdir()
    materialise_base(params.model, TEXTS, params.seed, again)
    assert (again / "model.safetensors").read_bytes() == (tiny_base / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_base / "tokenizer.json").read_text()


def test_local_source_copies_a_model_folder(tiny_base, tmp_path):
    params = compose(["model.source=local", f"model.local_path={tiny_base}"])
    out = tmp_path / "base"
    out.mkdir()
    materialise_base(params.model, [], params.seed, out)
    assert load_causal_lm(out).config.hidden_size == params.model.tiny.hidden_size


def test_folder_with_only_pickle_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="safetensors"):
        check_model_folder(tmp_path)


def test_hub_download_offline_fails_with_the_pinned_id_named(tmp_path):
    code = (
        "from slmtune.config import compose, validate\n"
        "from slmtune.models import materialise_base\n"
        "params = compose(['model=phi3_mini_4k'])\n"
        f"materialise_base(params.model, [], 0, __import__('pathlib').Path(r'{tmp_path}'))\n"
    )
    env = {**tool_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode != 0
    assert "ModelError" in result.stderr
    assert "microsoft/Phi-3-mini-4k-instruct@0a67737cc96d2554230f90338b163bc6380a2a85" in result.stderr


def test_remote_code_is_off_unless_the_model_config_turns_it_on():
    import inspect

    from slmtune.merging import merge_adapter

    for function in (load_tokenizer, load_causal_lm, merge_adapter):
        assert inspect.signature(function).parameters["trust_remote_code"].default is False


def test_turning_remote_code_on_warns_naming_the_folder(tiny_base):
    from slmtune.errors import RemoteCodeWarning

    with pytest.warns(RemoteCodeWarning, match=rf"trust_remote_code=true: loading {re.escape(str(tiny_base))}"):
        load_tokenizer(tiny_base, trust_remote_code=True)


def test_truncated_weights_are_refused_naming_the_file(tiny_base, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes((tiny_base / "model.safetensors").read_bytes()[:-100])
    with pytest.raises(ModelError, match=rf"{re.escape(str(weights))}: truncated"):
        check_safetensors(weights)


def test_an_adapter_with_only_pickle_weights_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="only pickle weights"):
        check_adapter_folder(tmp_path)
