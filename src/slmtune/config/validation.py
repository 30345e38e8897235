"""Validation: a composed mapping becomes a typed `Params`, or a ConfigError that names the key."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slmtune.artifacts import ARTIFACT_NAMES
from slmtune.config.schema import DataConfig, Params
from slmtune.errors import ConfigError, DataError
from slmtune.source_uris import source_kind

COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
MISSING = "???"
MOVED_KEYS = {"model.instruction": "data.instruction"}  # keys of earlier versions, and where they went
CONF_HINT = "fix conf/ or the override"


def validate(raw: dict[str, Any] | DictConfig, origin: str = "params", hint: str = CONF_HINT) -> Params:
    """Check `raw` against the schema; return a typed `Params` or raise ConfigError naming the key.

    `origin` says where the values came from (a file, or conf/ with overrides); `hint` what
    the user should do about a bad value.
    """
    if isinstance(raw, DictConfig):
        raw = OmegaConf.to_container(raw, resolve=False)  # type: ignore[assignment]
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of config groups at the top level; {hint}")
    missing = next(_marked_missing(raw), None)
    if missing is not None:
        raise ConfigError(
            f"{origin}: '{missing}' has no value ('{MISSING}' marks a value you must give); "
            f"set it in conf/ or with an override such as `{missing}=...`"
        )
    params = _to_params(raw, origin, hint)
    for check in (_check_fields, _check_data, _check_model, _check_eval):
        problem = check(params)
        if problem:
            raise ConfigError(f"{origin}: {problem}; {hint}")
    return params


def _marked_missing(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys whose value is OmegaConf's mandatory-value marker '???'."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _marked_missing(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _marked_missing(value, f"{prefix}{index}.")
    elif node == MISSING:
        yield prefix.rstrip(".")


def _to_params(raw: dict[str, Any], origin: str, hint: str) -> Params:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or _first_bad_section(raw) or "the top level"
        detail = str(getattr(err, "msg", err)).splitlines()[0]
        if "missing mandatory value" in detail:
            raise ConfigError(f"{origin}: '{key}' has no value; every key needs one; {hint}") from None
        raise ConfigError(
            f"{origin}: invalid configuration at key '{key}': {detail}{did_you_mean(key)}; {hint}"
        ) from None


def section_type(parts: list[str]) -> type | None:
    """The schema dataclass at a dotted path (`["train"]` -> TrainConfig), or None."""
    node: Any = Params
    for part in parts:
        node = get_type_hints(node).get(part)
        if node is None or not is_dataclass(node):
            return None
    return node


def _first_bad_section(raw: dict[str, Any]) -> str | None:
    """The first top-level section given as something other than a mapping."""
    return next((name for name in raw if section_type([name]) and not isinstance(raw[name], dict)), None)


def did_you_mean(key: str) -> str:
    """' (did you mean 'train.learning_rate'?)' for a misspelt or moved key, else ''."""
    if key in MOVED_KEYS:
        return f" (it moved to '{MOVED_KEYS[key]}')"
    *parents, last = key.split(".")
    section = section_type(parents)
    names = [f.name for f in fields(section)] if section else []
    if not names or last in names:
        return ""
    close = difflib.get_close_matches(last, names, n=1)
    return f" (did you mean '{'.'.join([*parents, close[0]])}'?)" if close else ""


def unknown_key(key: str) -> bool:
    """True when `key`'s parent is a schema section that has no field named like its last part."""
    *parents, last = key.split(".")
    section = section_type(parents)
    return section is not None and last not in {f.name for f in fields(section)}


def _check_fields(node: Any, prefix: str = "") -> str | None:
    """Every field's choices and range check, from the schema's metadata, in schema order."""
    for spec in fields(node):
        value = getattr(node, spec.name)
        key = f"{prefix}{spec.name}"
        if is_dataclass(value):
            problem = _check_fields(value, f"{key}.")
            if problem:
                return problem
            continue
        choices, check = spec.metadata.get("choices"), spec.metadata.get("check")
        if choices and value not in choices:
            return f"'{key}' is {value!r}; expected one of {list(choices)}"
        if check is not None and not check(value):
            return f"'{key}' is {value!r}; it must be {spec.metadata['must_be']}"
    return None


def _check_data(params: Params) -> str | None:
    data = params.data
    floating = _check_data_revision(data)
    if floating:
        return floating
    total = data.val_fraction + data.test_fraction
    if total > 0.9 + 1e-9:
        return (
            f"'data.val_fraction' ({data.val_fraction}) + 'data.test_fraction' ({data.test_fraction}) = {total:g}; "
            "train gets the rest, so keep the sum at most 0.9"
        )
    check = _check_classification if data.kind == "classification" else _check_generation
    return check(data)


def _check_classification(data: DataConfig) -> str | None:
    """A label task: two or more labels, a phrase and a label column, an instruction."""
    if data.format != "fields":
        return (
            f"'data.format' is {data.format!r}, but kind=classification reads a text and a label column "
            "(format=fields); set data.kind=generation to train on chats or templates"
        )
    folded = [label.strip().casefold() for label in data.labels]
    if len(data.labels) < 2 or len(set(folded)) != len(folded) or not all(folded):
        return (
            f"'data.labels' is {list(data.labels)}; it must hold at least two distinct, non-empty labels (case aside)"
        )
    if data.text_field == data.label_field:
        return f"'data.text_field' and 'data.label_field' are both {data.text_field!r}; they must differ"
    if not (data.instruction or "").strip():
        return "'data.instruction' is empty; a classification prompt needs it (it names the labels to pick from)"
    if data.system is not None or data.prompt_template is not None or data.completion_template is not None:
        return "'data.system', 'data.prompt_template' and 'data.completion_template' apply to kind=generation only"
    return None


def _check_generation(data: DataConfig) -> str | None:
    """A text task: no label set, and the keys its format reads."""
    if data.labels:
        return f"'data.labels' is {list(data.labels)}; kind=generation has no label set: make it []"
    if data.format == "fields" and data.text_field == data.label_field:
        return f"'data.text_field' and 'data.label_field' are both {data.text_field!r}; the prompt and response differ"
    if data.format == "messages" and not data.messages_field.strip():
        return "'data.messages_field' is empty; name the column holding each row's list of turns"
    if data.format == "text_template":
        for key in ("prompt_template", "completion_template"):
            if not (getattr(data, key) or "").strip():
                return (
                    f"'data.{key}' is empty; format=text_template needs both data.prompt_template (the text the "
                    "model is given) and data.completion_template (the text it learns to write), e.g. "
                    "prompt_template='### Text: {phrase}\\n### The tone is:\\n', completion_template='{tone}'"
                )
    elif data.prompt_template is not None or data.completion_template is not None:
        return f"'data.prompt_template' and 'data.completion_template' apply to format=text_template, not {data.format}"
    return None


def _check_data_revision(data: DataConfig) -> str | None:
    """A hub data set needs a pinned revision (a commit), as a hub model does."""
    try:
        if source_kind(data.source) != "hub":
            return None
    except DataError as err:
        return str(err)
    if not data.revision:
        return (
            f"'data.revision' is required when data.source is a hub data set ({data.source!r}): pin a commit hash "
            "(40 hex digits) from the data set's history on the hub"
        )
    if not COMMIT_HASH.fullmatch(data.revision) and not data.allow_floating_revision:
        return (
            f"'data.revision' is {data.revision!r}, a branch or tag whose files can change; pin a commit hash "
            "(40 hex digits), or set data.allow_floating_revision=true"
        )
    return None


def _check_model(params: Params) -> str | None:
    model = params.model
    if model.source == "hub":
        if not (model.hub_id and model.revision):
            return "'model.hub_id' and 'model.revision' are required when model.source=hub"
        if not COMMIT_HASH.fullmatch(model.revision) and not model.allow_floating_revision:
            return (
                f"'model.revision' is {model.revision!r}, a branch or tag whose files can change; pin a commit hash "
                "(40 hex digits, from the model's commit history on the hub), or set "
                "model.allow_floating_revision=true to accept whatever it points at when `prepare` runs"
            )
    if model.source == "azureml":
        from slmtune.errors import ModelError
        from slmtune.source_uris import configured_registry_model

        try:
            configured_registry_model(model)
        except ModelError as err:
            return str(err)
    if model.source == "local" and not model.local_path:
        return "'model.local_path' is required when model.source=local"
    if model.source == "tiny":
        tiny = model.tiny
        if tiny.hidden_size % tiny.num_attention_heads or tiny.num_attention_heads % tiny.num_key_value_heads:
            return (
                f"'model.tiny' has hidden_size {tiny.hidden_size}, {tiny.num_attention_heads} attention heads and "
                f"{tiny.num_key_value_heads} key/value heads; heads must divide hidden_size and kv heads divide heads"
            )
        if model.max_length > tiny.max_position_embeddings:
            return (
                f"'model.max_length' ({model.max_length}) exceeds the tiny model's context "
                f"'model.tiny.max_position_embeddings' ({tiny.max_position_embeddings})"
            )
    return None


def _check_eval(params: Params) -> str | None:
    unknown = set(params.eval.artifacts) - set(ARTIFACT_NAMES)
    if unknown:
        return f"'eval.artifacts' has unknown entries {sorted(unknown)}; expected some of {list(ARTIFACT_NAMES)}"
    return None
