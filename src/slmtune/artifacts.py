"""The model artifacts the pipeline makes, named and described once.

Every artifact is evaluated on the same examples; eval, the plots, `slmtune classify` and the
tests read this registry instead of spelling the names out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    """One model artifact: where it lives under models/, how it runs, and what makes it."""

    name: str
    title: str
    folder: str  # the model folder under models/ it loads from
    adapter: str | None  # a peft adapter folder under models/ applied on top, if any
    runtime: str  # "pytorch" or "onnxruntime-genai"
    made_by: str  # the dvc.yaml stage that writes it

    def folders(self, models: Path) -> list[Path]:
        """Every folder the artifact needs (its size on disk is theirs together)."""
        return [models / self.folder, *([models / self.adapter] if self.adapter else [])]


ARTIFACTS = (
    Artifact("base", "base model", "base", None, "pytorch", "prepare"),
    Artifact("adapter", "base + LoRA adapter", "base", "adapter", "pytorch", "train_lora"),
    Artifact("merged", "merged model", "merged", None, "pytorch", "merge"),
    Artifact("int4", "int4 ONNX model", "int4", None, "onnxruntime-genai", "build_int4"),
)
ARTIFACT_NAMES = tuple(artifact.name for artifact in ARTIFACTS)
BY_NAME = {artifact.name: artifact for artifact in ARTIFACTS}


def artifact(name: str) -> Artifact:
    """The registered artifact called `name` (names are checked when params are validated)."""
    return BY_NAME[name]
