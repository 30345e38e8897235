"""Every command the README and docs/ show still works: run here, checked by another test, or out of reach."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from helpers import BIN, ROOT, copy_run, sh

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)```", re.DOTALL)

# Run in a copy of the reproduced project (fast: no training).
RUN_HERE = [
    r"dvc exp show( --only-changed)?( --md)?",
    r"dvc plots (show|diff)",
    r"\.venv/bin/slmtune classify .*",
    r"slmtune classify \"what a day\" --model-path serve/int4",
    r"make (push|pull)( REMOTE=x)?",
    r"make params HW=cuda",
    r"\.venv/bin/slmtune params train\.r=8",
    r"make pull-model REV=v1\.2 OUT=serve/int4",
]
# Run by another test of the suite, in the same form or a stricter one.
CHECKED_ELSEWHERE = {
    r"make repro": "conftest.pipeline_run (dvc repro of a fresh copy), test_pipeline",
    r"make test": "this suite (.ci/run)",
    r"make lint": "test_style.test_ruff_finds_nothing",
    r"make bench BENCH_ARGS=--quick": "test_bench (python -m slmtune.bench --quick)",
    r"dvc exp run -S (train\.learning_rate=1\.0e-3|train\.r=8 -S build\.block_size=64|train=(qlora|dora))": (
        "test_experiments.test_every_method_reaches_an_accurate_int4_model and the experiment tests"
    ),
    r"dvc exp run -n polarity .*": "test_experiments.test_your_own_task_runs_end_to_end_from_a_csv",
    r"dvc exp run -n polarity_lora .*": (
        "test_experiments.test_two_tasks_share_one_int4_base_and_one_server_switches_between_them"
    ),
    r"dvc exp run -S model=tiny_phi3_lm .*": (
        "test_experiments.test_the_lora_only_profile_learns_the_task_and_its_runtime_adapter_matches_merged_int4"
    ),
    r"dvc exp run -S data=(home_commands|travel_qa)": "test_generation_pipeline (each format end to end)",
    r"(\.venv/bin/)?slmtune generate .*": "test_generation_pipeline (one prompt, a file, sampling)",
    r"(\.venv/bin/)?slmtune chat --model-path models/int4": "test_generation_pipeline.test_chat_keeps_the_conversation",
    r"dvc exp run -S data\.source=data/raw/my_phrases\.csv": "test_pipeline (your own task, from a CSV)",
    r"dvc exp run --queue .*|dvc queue start": "test_gate (build options as experiment params)",
    r"dvc exp show --md --drop .*": "test_pipeline.test_experiments_with_a_changed_param_show_up_in_exp_show",
    r"make push REMOTE=azure|make pull REMOTE=azure|dvc exp (push|pull) -r azure .*": "test_remote (Azurite)",
    r"make pull-model REV=my-exp REMOTE=azure": "test_remote.test_dvc_get_fetches_just_the_int4_model_of_a_revision",
    r"dvc remote modify --local azure account_name <account>": "test_remote (the remote's settings)",
    r"make train HW=azureml": "test_azureml (the job, built and validated offline)",
    r"(\.venv/bin/)?slmtune azureml-spec .*": (
        "test_azureml.test_azureml_spec_prints_the_job_in_the_sdks_schema_and_no_secret, "
        "test_azureml_pipeline.test_the_readmes_two_node_spec_is_what_azureml_spec_prints"
    ),
    r"make serve|(\.venv/bin/)?slmtune serve .*": "test_serve, test_serve_hostile, test_serve_page (real servers)",
    r"curl -sN? http://127\.0\.0\.1:8000/.*": "test_serve (the same requests, with httpx and the openai client)",
    r"make loadtest( LOADTEST_ARGS=.*)?": (
        "test_serve.test_the_load_test_drives_1_4_and_16_clients_without_an_error (the same module on the tiny "
        "model; the target's own run on the bench model is committed in bench/serve.json)"
    ),
    r"(\.venv/bin/)?slmtune (lora-base|export-adapter) .*|slmtune (classify|generate) .* --adapter .*": (
        "test_runtime_adapters (the same commands on the tiny base with two adapters)"
    ),
    r"make adapters EXPS=.*|(\.venv/bin/)?slmtune export-experiments .*": (
        "test_experiments.test_the_lora_only_profile_learns_the_task_and_its_runtime_adapter_matches_merged_int4 "
        "(its commands, on the LoRA-only experiment)"
    ),
    r"make bench": "test_bench (the same code, --quick)",
    r"make bench BENCH_ARGS=.*": "test_bench (overrides and options)",
    r"make bench-peer( PEER_ARGS=.*)?": (
        "test_peer (every part but Olive, whose environment takes minutes to install; the make target's "
        "own run is committed in bench/peer.json)"
    ),
}
# Out of reach of this machine: what each needs.
NOT_HERE = {
    r"source \.venv/bin/activate": "a shell set-up, not a command",
    r"export .*": "the user's own credentials or IDs",
    r"az login": "an Azure account",
    r"dvc get https://github\.com/.*": "the network",
    r"\.venv/bin/pip install -e '\.\[azureml\]'": "an optional extra (PyPI)",
    r"dvc exp run -S 'data\.source=azureml://.*'": "an Azure ML workspace",
    r"dvc exp run -S hw=azureml .*": "an Azure ML workspace (test_azureml_pipeline builds and checks its job offline)",
    r"dvc exp run -S model=phi3_mini_4k -S model\.source=azureml .*": (
        "an Azure ML registry (test_registry_models runs prepare on such an artifact, the download aside)"
    ),
    r"dvc exp run -S data\.source=owner/name .*": "the network (a hub data set)",
    r"make train HW=cuda(_multi)?|dvc exp run -S hw=cuda": "a GPU (test_hardware checks the refusal here)",
    r"docker (build|run) .*": "a Docker daemon (this machine has the client only)",
}


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every command line in the pages' bash blocks, continuation lines joined."""
    found = []
    for page in PAGES:
        for block in BLOCK.findall(page.read_text(encoding="utf-8")):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                command = re.split(r"\s+#\s", line)[0].strip()
                if command and not command.startswith("#"):
                    found.append((page.name, command))
    return found


def category(command: str) -> str | None:
    groups = {"here": RUN_HERE, "elsewhere": list(CHECKED_ELSEWHERE), "not here": list(NOT_HERE)}
    matched = [name for name, patterns in groups.items() if any(re.fullmatch(p, command) for p in patterns)]
    return matched[0] if len(matched) == 1 else None


def test_every_documented_command_is_run_checked_elsewhere_or_out_of_reach():
    commands = documented_commands()
    assert len(commands) >= 40
    unaccounted = [f"{page}: {command}" for page, command in commands if category(command) is None]
    assert unaccounted == []


def make(*args: str) -> list[str]:
    """`make ARGS` with the suite's own virtual environment (no second set-up)."""
    venv = BIN.parent
    return ["make", f"VENV={venv}", "-o", str(venv / ".installed"), *args]


def order(command: str) -> int:
    """Push before pull, and fetch serve/int4 before classifying with it."""
    if "classify" in command and "serve/int4" in command:
        return 2
    return 1 if "pull" in command else 0


def as_run_here(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "make":
        return make(*words[1:])
    if words[0].startswith(".venv/bin/"):
        return [str(BIN / Path(words[0]).name), *words[1:]]
    if words[0] == "slmtune":
        return [str(BIN / "slmtune"), *words[1:]]
    return words


@pytest.mark.slow
def test_the_documented_commands_run_on_a_reproduced_project(pipeline_run, tmp_path):
    project = copy_run(pipeline_run, tmp_path / "project")
    phrases = ["what a day", "I miss her so much", "a spider on my pillow!"]
    (project / "phrases.jsonl").write_text("".join(json.dumps({"phrase": p}) + "\n" for p in phrases))
    sh(["git", "tag", "v1.2"], project)
    sh(["dvc", "remote", "add", "x", str(tmp_path / "remote-x")], project)
    commands = [command for _, command in documented_commands() if category(command) == "here"]
    commands.sort(key=order)
    assert len(commands) >= 12
    for command in commands:
        result = sh(as_run_here(command), project, check=False, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert (project / "predictions.jsonl").is_file() and (project / "serve/int4/model.onnx").is_file()
