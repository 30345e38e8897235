"""Configuration: composition, profiles and schema validation."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import with_changes
from slmtune.config import compose, compose_raw, load_params, validate
from slmtune.errors import ConfigError


def test_committed_params_equal_the_default_composition(repo_root):
    committed = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert committed == compose_raw()[0]


@pytest.mark.parametrize("hw", ["cpu", "cuda"])
@pytest.mark.parametrize("model", ["tiny_phi3", "phi3_mini_4k"])
def test_every_profile_composes_and_validates(hw, model):
    params = compose([f"hw={hw}", f"model={model}"])
    assert params.hw.name == hw
    assert params.model.name == model


def test_cuda_profile_defaults_to_phi3_mini_in_bf16():
    params = compose(["hw=cuda"])
    assert params.model.name == "phi3_mini_4k"
    assert params.hw.dtype == "bfloat16"
    assert params.hw.execution_provider == "cuda"


def test_phi3_mini_is_pinned_to_a_commit_and_runs_no_remote_code():
    model = compose(["model=phi3_mini_4k"]).model
    assert model.hub_id == "microsoft/Phi-3-mini-4k-instruct"
    assert re.fullmatch(r"[0-9a-f]{40}", model.revision or "")
    assert model.trust_remote_code is False


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.learnin_rate"):
        validate(with_changes(train={"learnin_rate": 0.1}))


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"train\.r"):
        validate(with_changes(train={"r": "sixteen"}))


def test_value_outside_its_choices_is_named():
    with pytest.raises(ConfigError, match=r"hw\.device"):
        validate(with_changes(hw={"device": "tpu"}))


def test_typo_in_an_override_fails_composition():
    with pytest.raises(ConfigError):
        compose(["train.lerning_rate=0.1"])


def test_unknown_profile_fails_composition():
    with pytest.raises(ConfigError, match="hw"):
        compose(["hw=quantum"])


def test_missing_params_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="make params"):
        load_params(tmp_path / "params.yaml")


def test_params_file_with_a_typo_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**compose_raw()[0], "seeed": 1}))
    with pytest.raises(ConfigError, match=r"params\.yaml.*seeed"):
        load_params(path)


@pytest.mark.parametrize("model", ["tiny_phi3", "phi3_mini_4k"])
def test_no_model_config_runs_remote_code_or_floats_by_default(model):
    params = compose([f"model={model}"])
    assert params.model.trust_remote_code is False
    assert params.model.allow_floating_revision is False


def test_a_floating_hub_revision_is_refused_unless_allowed():
    with pytest.raises(ConfigError, match=r"'model\.revision' is 'main'.*allow_floating_revision=true"):
        compose(["model=phi3_mini_4k", "model.revision=main"])
    allowed = compose(["model=phi3_mini_4k", "model.revision=main", "model.allow_floating_revision=true"])
    assert allowed.model.revision == "main"


def test_the_missing_value_marker_is_named_not_replaced_by_a_default():
    with pytest.raises(ConfigError, match=r"'train\.r' has no value"):
        validate(with_changes(train={"r": "???"}))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.learning_rate=0.0", "train.learning_rate"),
        ("train.r=0", "train.r"),
        ("train.lora_alpha=-1", "train.lora_alpha"),
        ("train.lora_dropout=1.5", "train.lora_dropout"),
        ("train.num_train_epochs=-1.0", "train.num_train_epochs"),
        ("build.block_size=100", "build.block_size"),
        ("data.test_fraction=0.0", "data.test_fraction"),
        ("hw.per_device_train_batch_size=0", "hw.per_device_train_batch_size"),
        ("model.max_length=512", "model.max_length"),
        ("seed=-1", "seed"),
    ],
)
def test_out_of_range_values_are_named(override, key):
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}'"):
        compose([override])


def test_labels_that_differ_only_in_case_are_refused():
    with pytest.raises(ConfigError, match=r"data\.labels"):
        validate(with_changes(data={"labels": ["joy", "Joy", "sad"]}))


def test_unknown_group_option_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"config group 'hw' has no option 'tpu'.*available: azureml, cpu, cuda"):
        compose(["hw=tpu"])


def test_the_current_projects_conf_is_composed_with_its_own_group_options(repo_root, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(repo_root / "conf", tmp_path / "conf")
    tone = yaml.safe_load((tmp_path / "conf/data/tone.yaml").read_text())
    polarity = {**tone, "name": "polarity", "labels": ["negative", "positive"]}
    (tmp_path / "conf/data/polarity.yaml").write_text(yaml.safe_dump(polarity))
    monkeypatch.chdir(tmp_path)
    assert compose(["data=polarity"]).data.labels == ["negative", "positive"]
    monkeypatch.chdir(tmp_path / "conf")  # no conf/ here: the installed project's, which has no such option
    with pytest.raises(ConfigError, match="available: home_commands, tone"):
        compose(["data=polarity"])


def test_a_key_that_moved_says_where_it_went():
    moved = re.escape("unknown key 'model.instruction' (it moved to 'data.instruction')")
    with pytest.raises(ConfigError, match=moved):
        compose(["model.instruction=Is this positive?"])
    assert compose(["data.instruction=Is this positive?"]).data.instruction == "Is this positive?"


def test_a_key_left_out_of_conf_is_named_not_filled_by_a_default():
    raw = compose_raw()[0]
    del raw["train"]["r"]
    with pytest.raises(ConfigError, match=r"'train\.r' has no value"):
        validate(raw)


def test_no_schema_field_carries_a_default_value():
    from dataclasses import MISSING, fields, is_dataclass

    from slmtune.config import schema

    classes = [value for value in vars(schema).values() if is_dataclass(value) and value.__module__ == schema.__name__]
    with_defaults = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in fields(cls)
        if f.default is not MISSING or f.default_factory is not MISSING
    ]
    assert len(classes) >= 8
    assert with_defaults == []


def test_every_schema_field_has_a_one_line_doc():
    from dataclasses import fields, is_dataclass

    from slmtune.config import schema

    classes = [value for value in vars(schema).values() if is_dataclass(value) and value.__module__ == schema.__name__]
    undocumented = [f"{c.__name__}.{f.name}" for c in classes for f in fields(c) if not f.metadata.get("doc")]
    assert undocumented == []


def inherited(conf_dir, group: str, option: str) -> dict:
    """What a group option's file composes to on its own: its same-group parents, then its own keys."""
    from omegaconf import OmegaConf

    raw = yaml.safe_load((conf_dir / group / f"{option}.yaml").read_text()) or {}
    parents = [entry for entry in raw.pop("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    merged = OmegaConf.create({})
    for parent in parents:
        merged = OmegaConf.merge(merged, inherited(conf_dir, group, parent))
    return OmegaConf.to_container(OmegaConf.merge(merged, raw))


def restated(own: dict, parent: dict, prefix: str = "") -> list[str]:
    """Keys of `own` whose value equals what `parent` already gives them."""
    found = []
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(parent.get(key), dict):
            found += restated(value, parent[key], f"{prefix}{key}.")
        elif key in parent and parent[key] == value:
            found.append(f"{prefix}{key}")
    return found


def variants(conf_dir):
    for group_dir in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        for path in sorted(group_dir.glob("*.yaml")):
            raw = yaml.safe_load(path.read_text()) or {}
            parents = [e for e in raw.get("defaults", []) if isinstance(e, str) and e != "_self_"]
            if parents:
                yield group_dir.name, path.stem, raw, parents


def test_no_variant_restates_a_value_it_inherits(repo_root):
    conf_dir = repo_root / "conf"
    found = []
    for group, option, raw, parents in variants(conf_dir):
        own = {k: v for k, v in raw.items() if k != "defaults"}
        parent: dict = {}
        for name in parents:
            parent = {**parent, **inherited(conf_dir, group, name)}
        found += [f"conf/{group}/{option}.yaml: {key}" for key in restated(own, parent)]
    assert len(list(variants(conf_dir))) >= 5
    assert found == []


def test_the_restated_value_check_catches_one(repo_root, tmp_path):
    import shutil

    shutil.copytree(repo_root / "conf", tmp_path / "conf")
    qlora = tmp_path / "conf/train/qlora.yaml"
    qlora.write_text(qlora.read_text() + "r: 16\n")
    own = yaml.safe_load(qlora.read_text())
    own.pop("defaults")
    assert restated(own, inherited(tmp_path / "conf", "train", "lora")) == ["r"]
