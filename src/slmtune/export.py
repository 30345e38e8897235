"""Build an int4 ONNX model for ONNX Runtime GenAI with its model builder."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import tempfile
from pathlib import Path

from slmtune.config import BuildConfig
from slmtune.environment import import_without_collector
from slmtune.errors import ModelError

DISPATCH = re.compile(r"""config\.architectures\[0\]\s*==\s*["'](\w+)["']""")


def supported_architectures() -> set[str]:
    """The architectures the installed model builder dispatches on, read from its source (empty if unknown)."""
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return set()
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / "builder.py"
    return set(DISPATCH.findall(source.read_text(encoding="utf-8"))) if source.is_file() else set()


def check_buildable(merged_dir: Path) -> None:
    """Refuse, before the builder runs, a model whose architecture the int4 builder cannot convert."""
    from slmtune.models import read_model_config

    where = merged_dir / "config.json"
    architectures = read_model_config(merged_dir).get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise ModelError(f"{where}: no 'architectures' entry (e.g. [\"Phi3ForCausalLM\"]); the int4 builder needs it")
    supported = supported_architectures()
    if supported and architectures[0] not in supported:
        raise ModelError(
            f"{where}: architecture {architectures[0]!r} is not supported by the onnxruntime-genai int4 model "
            f"builder; it converts {', '.join(sorted(supported))}. Fine-tune a model of one of these families, "
            "or drop 'int4' from eval.artifacts and do not run build_int4"
        )


def builder_options(build: BuildConfig) -> list[str]:
    """The builder's `--extra_options` (KEY=VALUE) for `build.*`."""
    options = {
        "block_size": build.block_size,
        "accuracy_level": build.accuracy_level,
        "is_symmetric": str(build.symmetric).lower(),
        "algo_config": build.algorithm,
        "op_types_to_quantize": "MatMul/Gather" if build.quantize_embeddings else "MatMul",
        "hf_token": "false",
    }
    if build.int8_matmuls:
        options["matmul_mixed_precision"] = ",".join(f"{group}:int8" for group in build.int8_matmuls)
    return [f"{key}={value}" for key, value in options.items()]


def build_onnx(merged_dir: Path, out_dir: Path, build: BuildConfig, provider: str) -> None:
    """Run the builder in this process into `out_dir`, for execution provider `provider` (cpu or cuda).

    In-process, the builder reuses this process's torch and transformers instead of starting a second
    Python that imports them again (half of the stage's time on the tiny default). Its chatter is kept
    and shown only when it fails.
    """
    import_without_collector("onnxruntime_genai.models.builder")
    from onnxruntime_genai.models import builder

    options = builder_options(build)
    print(f"[slmtune] building: {build.precision} for {provider}, {' '.join(options)}", flush=True)
    chatter = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="slmtune-builder-cache-") as cache, _no_git_stamp():
        arguments = (None, str(merged_dir), str(out_dir), build.precision, provider, cache)
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                extra_options = builder.parse_extra_options(*arguments, options)
                builder.create_model(*arguments, **extra_options)
        except (Exception, SystemExit) as err:  # the builder raises what it meets, and exits on some checks
            raise _builder_error(merged_dir, build, f"{chatter.getvalue()}\n{type(err).__name__}: {err}") from None


@contextlib.contextmanager
def _no_git_stamp():
    """Hide every git repository from the builder while it runs.

    The builder stamps the model with `git rev-parse HEAD` run beside its own files, which inside a
    project's .venv is the project's commit: a folder's hash would change with every commit. Without
    a repository it stamps its release's commit instead.
    """
    previous = os.environ.get("GIT_DIR")
    os.environ["GIT_DIR"] = os.devnull
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GIT_DIR", None)
        else:
            os.environ["GIT_DIR"] = previous


def _builder_error(merged_dir: Path, build: BuildConfig, output: str) -> ModelError:
    """The failure explained where it is understood, else the builder's last words."""
    unsupported = re.search(r"The (.+) model is not currently supported", output)
    if unsupported:
        return ModelError(f"{merged_dir}: the int4 model builder does not support {unsupported.group(1)}")
    if build.algorithm != "default" and "cannot reshape array" in output:
        return ModelError(
            f"the int4 model builder failed: ONNX Runtime's {build.algorithm} quantizer cannot pack zero points "
            f"with build.block_size={build.block_size} for this model (it needs an even number of blocks along "
            "each weight's input dimension); use a smaller build.block_size, or build.algorithm=default"
        )
    tail = "\n".join(output.strip().splitlines()[-30:])
    return ModelError(f"the onnxruntime-genai model builder failed:\n{tail}")


def check_onnx_folder(folder: Path) -> None:
    """Load the folder in ONNX Runtime GenAI, as a user's app would."""
    from slmtune.ortgenai import load_model, onnxruntime_genai

    try:
        onnxruntime_genai().Tokenizer(load_model(folder))
    except Exception as err:  # onnxruntime-genai raises plain RuntimeError
        raise ModelError(f"{folder}: ONNX Runtime GenAI cannot load the built model: {err}") from None
