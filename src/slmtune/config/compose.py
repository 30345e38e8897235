"""Composition and files: conf/ with Hydra overrides becomes `Params`; params.yaml is read and written.

`conf/` is the single source of configuration. DVC composes it into `params.yaml` on
`dvc exp run`; `slmtune params` does the same for plain `dvc repro`. Stages read
`params.yaml` through `load_params`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from slmtune.config.schema import GROUPS, Params
from slmtune.config.validation import did_you_mean, unknown_key, validate
from slmtune.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"  # the installed project's
PARAMS_HINT = (
    "params.yaml is generated from conf/: fix conf/ (or your `dvc exp run -S` override) "
    "and recompose it with `make params` or `slmtune params KEY=VALUE`"
)


def project_conf_dir() -> Path:
    """The `conf/` of the project in the current folder (where `dvc exp run` composes), else the installed one."""
    local = Path.cwd() / "conf"
    return local if (local / "config.yaml").is_file() else CONF_DIR


def compose(overrides: list[str] | None = None, conf_dir: Path | None = None) -> Params:
    """Compose conf/ with Hydra overrides into a validated `Params`."""
    return compose_raw(overrides, conf_dir)[1]


def compose_raw(overrides: list[str] | None = None, conf_dir: Path | None = None) -> tuple[dict[str, Any], Params]:
    """Compose `conf/config.yaml` with overrides as DVC's Hydra integration does: the mapping and its Params."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    conf_dir = conf_dir or project_conf_dir()
    overrides = list(overrides or [])
    for override in overrides:
        _check_override(override, conf_dir)
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except HydraException as err:
        detail = str(err).split("\nConfig search path")[0].strip()
        raise ConfigError(f"{conf_dir}: cannot compose configuration with overrides {overrides}: {detail}") from None
    raw: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return raw, validate(raw, origin=f"{conf_dir} with overrides {overrides}")


def group_options(group: str, conf_dir: Path) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _check_override(override: str, conf_dir: Path) -> None:
    """Name the group and its options for `hw=tpu`, and suggest the key for a misspelt `train.lerning_rate=...`."""
    match = re.fullmatch(r"([~+]*)([\w.]+)=(.*)", override.strip(), flags=re.DOTALL)
    if match is None:
        return
    prefix, key, value = match.groups()
    if key in GROUPS and not prefix:
        options = group_options(key, conf_dir)
        if value not in options:
            raise ConfigError(
                f"override '{override}': config group '{key}' has no option {value!r} "
                f"(no {conf_dir / key / value}.yaml); available: {', '.join(options)}"
            )
    elif not prefix and unknown_key(key):
        raise ConfigError(
            f"override '{override}': unknown key '{key}'{did_you_mean(key)}; "
            "the schema in src/slmtune/config/schema.py lists every key"
        )


def params_yaml(raw: dict[str, Any]) -> str:
    """The YAML that DVC's Hydra integration writes on `dvc exp run`, so neither rewrites the other."""
    return yaml.safe_dump(raw, sort_keys=False)


def write_params(path: Path, overrides: list[str] | None = None) -> Params:
    """Compose the configuration and write it to `path` (normally `params.yaml`) atomically."""
    from slmtune.atomic import atomic_write_text

    raw, params = compose_raw(overrides)
    atomic_write_text(path, params_yaml(raw))
    return params


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `make params` to compose it from conf/")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{_yaml_place(path, err)}: not valid YAML ({_yaml_problem(err)}); {PARAMS_HINT}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config groups at the top level; {PARAMS_HINT}")
    return validate(raw, origin=str(path), hint=PARAMS_HINT)


def _yaml_place(path: Path, err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    return f"{path}:{mark.line + 1}" if mark is not None else str(path)


def _yaml_problem(err: Exception) -> str:
    problem = getattr(err, "problem", None)
    return str(problem) if problem else str(err).splitlines()[0]
