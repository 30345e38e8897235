"""Configuration: the typed schema (`schema`), its checks (`validation`) and composition of conf/ (`compose`)."""

from slmtune.config.compose import (
    compose,
    compose_raw,
    group_options,
    load_params,
    params_yaml,
    project_conf_dir,
    write_params,
)
from slmtune.config.schema import (
    GROUPS,
    AzureMLConfig,
    BuildConfig,
    DataConfig,
    EvalConfig,
    HwConfig,
    ModelConfig,
    Params,
    ServeConfig,
    TinyArchitecture,
    TrainConfig,
)
from slmtune.config.validation import COMMIT_HASH, validate

__all__ = [
    "COMMIT_HASH",
    "GROUPS",
    "AzureMLConfig",
    "BuildConfig",
    "DataConfig",
    "EvalConfig",
    "HwConfig",
    "ModelConfig",
    "Params",
    "ServeConfig",
    "TinyArchitecture",
    "TrainConfig",
    "compose",
    "compose_raw",
    "group_options",
    "load_params",
    "params_yaml",
    "project_conf_dir",
    "validate",
    "write_params",
]
