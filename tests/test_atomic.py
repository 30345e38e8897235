"""Atomic outputs: complete or absent, never half-written."""

from __future__ import annotations

import pytest

from slmtune.atomic import atomic_outputs, atomic_write_json


def test_outputs_appear_only_when_complete(tmp_path):
    final = tmp_path / "models" / "adapter"
    with atomic_outputs(final) as (temp,):
        (temp / "weights.bin").write_text("w")
        assert not final.exists()
    assert (final / "weights.bin").read_text() == "w"


def test_a_failure_leaves_the_previous_output_and_no_temporaries(tmp_path):
    final = tmp_path / "adapter"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs(final) as (temp,):
        (temp / "new.txt").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    assert [p.name for p in final.iterdir()] == ["old.txt"]


def test_json_is_replaced_whole(tmp_path):
    path = tmp_path / "metrics" / "eval.json"
    atomic_write_json(path, {"accuracy": 0.5})
    atomic_write_json(path, {"accuracy": 0.9})
    assert path.read_text() == '{\n  "accuracy": 0.9\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"]


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    final = tmp_path / "merged"
    stale = tmp_path / ".merged.abc123.tmp"
    stale.mkdir()
    (stale / "half.safetensors").write_bytes(b"\0")
    with atomic_outputs(final) as (temp,):
        (temp / "model.safetensors").write_bytes(b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
