"""The peer benchmark's own parts: the same work handed to Olive, the figures, the README section.

`make bench-peer` itself needs Olive in its own environment (minutes to install); it is run by hand
and its results are committed in bench/. These tests run what it does without Olive.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slmtune.bench.peer import (
    MAX_SEQ_LEN,
    Job,
    Workspace,
    job_overrides,
    olive_config,
    stage_commands,
    summarise,
    total_steps,
)
from slmtune.bench.report import _sections, replace_section
from slmtune.config import compose
from slmtune.errors import ConfigError


def test_olive_gets_the_same_training_settings(tmp_path):
    params = compose(job_overrides(Job("tiny_phi3", None, train_only=False, pairs=1)))
    workspace = Workspace(tmp_path)
    config = olive_config(params, workspace, workspace.run("olive", 0), train_only=False)
    lora = config["passes"]["lora"]
    args = lora["training_args"]
    train = params.train
    assert (lora["r"], lora["alpha"], lora["lora_dropout"]) == (train.r, train.lora_alpha, train.lora_dropout)
    assert lora["target_modules"] == list(params.model.lora_target_modules)
    assert lora["torch_dtype"] == "float32" and args["gradient_checkpointing"] is False
    assert args["per_device_train_batch_size"] == params.hw.per_device_train_batch_size
    assert args["learning_rate"] == train.learning_rate and args["lr_scheduler_type"] == train.lr_scheduler_type
    assert args["num_train_epochs"] == train.num_train_epochs and args["warmup_ratio"] == train.warmup_steps
    assert args["seed"] == params.seed == args["data_seed"]
    assert list(config["passes"]) == ["lora", "merge", "builder"]
    assert config["passes"]["builder"]["int4_block_size"] == params.build.block_size
    data = config["data_configs"][0]["pre_process_data_config"]
    assert data["max_seq_len"] == MAX_SEQ_LEN and data["strategy"] == "line-by-line"
    assert config["cache_dir"].startswith(str(tmp_path.resolve() / "olive-0"))  # never a cached pass
    assert config["input_model"]["model_path"] == str((tmp_path / "base").resolve())


def test_a_training_only_job_trains_the_same_steps_without_evaluation_or_checkpoints(tmp_path):
    job = Job("tiny_phi3", 6, train_only=True, pairs=1)
    params = compose(job_overrides(job, rows=1708))
    assert total_steps(params, 1708) == 6
    assert params.train.eval_strategy == "no" and params.train.save_steps > 6
    assert params.model.modules_to_save == []
    workspace = Workspace(tmp_path)
    assert list(stage_commands(workspace, workspace.run("slmtune", 0), train_only=True)) == ["train_lora"]
    assert "merge" not in olive_config(params, workspace, workspace.run("olive", 0), train_only=True)["passes"]


def test_bad_job_settings_are_refused():
    with pytest.raises(ConfigError, match="--pairs"):
        Job("tiny_phi3", None, train_only=False, pairs=0).check()
    with pytest.raises(ConfigError, match="--steps"):
        Job("tiny_phi3", 0, train_only=False, pairs=1).check()


def test_the_summary_pairs_each_slmtune_run_with_its_olive_run():
    params = compose(["train.num_train_epochs=1.0"])
    tokens = [40] * 32  # two steps of 16 rows
    run = {"wall_s": 10.0, "cpu_s": 12.0, "sys_s": 1.0, "train_runtime_s": 2.0, "accuracy": 0.5}
    runs = {
        "slmtune": [dict(run), {**run, "wall_s": 12.0, "accuracy": 0.4}],
        "olive": [{**run, "wall_s": 20.0, "train_runtime_s": 4.0}, {**run, "wall_s": 20.0, "train_runtime_s": 4.0}],
    }
    summary = summarise(runs, tokens, params)
    assert summary["steps"] == 2 and summary["real_tokens"] == 1280
    assert summary["ratios"]["wall_s"]["runs"] == [0.5, 0.6]
    assert summary["tools"]["slmtune"]["real_tokens_per_s"] == 640.0
    assert summary["ratios"]["real_tokens_per_s"]["median"] == 2.0
    assert summary["tools"]["slmtune"]["accuracy"] == 0.4  # the lowest run's


def test_the_peer_section_is_replaced_in_place_and_kept_by_make_bench(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nmake bench's tables\n")
    replace_section(readme, "peer", "## Against the peer\n\nfirst")
    replace_section(readme, "peer", "## Against the peer\n\nsecond")
    text = readme.read_text()
    assert text.count("<!-- peer:start -->") == 1 and "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\nmake bench's tables\n")
    assert _sections(readme) == ["<!-- peer:start -->\n## Against the peer\n\nsecond\n<!-- peer:end -->\n"]


def test_the_stage_commands_are_the_ones_dvc_yaml_runs(tmp_path):
    import yaml

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    workspace = Workspace(tmp_path)
    for name, command in stage_commands(workspace, workspace.run("slmtune", 0), train_only=False).items():
        declared = stages[name]["cmd"].split()
        assert command[:3] == declared[:3]  # python -m slmtune.stages.<name>
        options = {word for word in declared if word.startswith("--")}
        assert options <= {word for word in command if word.startswith("--")}, name


def test_a_workspace_keeps_each_run_apart(tmp_path):
    workspace = Workspace(tmp_path)
    assert workspace.run("slmtune", 0) != workspace.run("olive", 0) != workspace.run("olive", 1)
    assert dataclasses.asdict(workspace) == {"root": tmp_path}
