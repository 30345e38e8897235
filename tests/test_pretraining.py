"""`model.tiny.pretrain_epochs`: prepare pretrains the tiny base on the training split only, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from helpers import ROOT
from slmtune.config import compose
from slmtune.errors import ConfigError
from slmtune.stages.prepare import prepare

ONE_EPOCH = ["model=tiny_phi3_lm", "model.tiny.pretrain_epochs=1"]


def prepared(tmp_path: Path, name: str, source: Path, overrides: list[str]) -> Path:
    """prepare's base folder for data at `source` with `overrides`."""
    out = tmp_path / name
    prepare(compose([f"data.source={source}", *overrides]), out / "data", out / "base")
    return out


def weights(run: Path) -> dict:
    return load_file(run / "base/model.safetensors")


def test_pretraining_changes_the_base_reproducibly_from_the_training_split_alone(tmp_path):
    source = ROOT / "data/raw/tone.jsonl"
    plain = prepared(tmp_path, "plain", source, ["model=tiny_phi3_lm", "model.tiny.pretrain_epochs=0"])
    first = prepared(tmp_path, "first", source, ONE_EPOCH)
    again = prepared(tmp_path, "again", source, ONE_EPOCH)
    assert any((weights(plain)[k] != weights(first)[k]).any() for k in weights(plain))
    assert all((weights(first)[k] == weights(again)[k]).all() for k in weights(first))

    # a row of the test split with another phrase and tone: the same training split, the same base
    test_phrases = {json.loads(line)["phrase"] for line in (first / "data/test.jsonl").read_text().splitlines()}
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    index = next(i for i, row in enumerate(rows) if row["phrase"] in test_phrases)
    rows[index] = {"phrase": rows[index]["phrase"] + " Really!", "tone": rows[index]["tone"]}
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    other = prepared(tmp_path, "other", changed, ONE_EPOCH)
    assert (other / "data/train.jsonl").read_bytes() == (first / "data/train.jsonl").read_bytes()
    assert (other / "data/test.jsonl").read_bytes() != (first / "data/test.jsonl").read_bytes()
    assert all((weights(first)[k] == weights(other)[k]).all() for k in weights(first))


def test_pretraining_a_generative_task_is_refused_before_any_output(tmp_path):
    params = compose(["data=home_commands", *ONE_EPOCH])
    with pytest.raises(ConfigError, match=r"model\.tiny\.pretrain_epochs=1.*data=home_commands"):
        prepare(params, tmp_path / "data", tmp_path / "base")
    assert not any(tmp_path.iterdir())
