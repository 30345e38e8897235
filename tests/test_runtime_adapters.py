"""Runtime LoRA adapters on one int4 base (ONNX Runtime GenAI `og.Adapters`), on the pipeline's tiny base.

Two LoRA adapters (different ranks and targets, random non-zero weights) are exported against the
pipeline's `models/base`; its int4 build gets LoRA inputs. With no adapter active the LoRA base is
the plain int4 base; with one active it is as close to PyTorch+peft as that adapter's merged int4
build is; adapters switch between generators of one model; what does not fit is refused by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import sh
from slmtune.errors import ModelError
from slmtune.runtime_adapters import AdapterCard, card_path, check_adapter, export_adapter

pytestmark = pytest.mark.slow
ADAPTERS = {  # name: (seed, rank, alpha, targets)
    "wide": (1, 8, 16, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]),
    "narrow": (2, 4, 4, ["qkv_proj", "o_proj"]),
}


def random_adapter(base: Path, out: Path, seed: int, rank: int, alpha: int, targets: list[str]) -> None:
    """A peft LoRA adapter on `base` with random A and B (B scaled down so the model stays sane)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from slmtune.models import load_causal_lm

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(load_causal_lm(base), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.5)
    model.save_pretrained(out)
    shutil.copy2(base / "slmtune_task.json", out / "slmtune_task.json")


@pytest.fixture(scope="module")
def built(pipeline_run, tmp_path_factory) -> dict[str, Path]:
    from slmtune.config import load_params
    from slmtune.stages.build_int4 import build

    root = tmp_path_factory.mktemp("runtime_adapters")
    base = pipeline_run / "models/base"
    params = load_params(pipeline_run / "params.yaml")
    build(params, base, root / "int4_base")
    # the commands a user runs (`slmtune lora-base` builds the int4 base itself, with the same settings)
    sh(["slmtune", "lora-base", "--base", str(base), "--out", str(root / "lora_base")], pipeline_run)
    paths = {"base": base, "int4_base": root / "int4_base", "lora_base": root / "lora_base"}
    for name, (seed, rank, alpha, targets) in ADAPTERS.items():
        random_adapter(base, root / name, seed, rank, alpha, targets)
        out = root / "adapters" / f"{name}.onnx_adapter"  # a folder not made yet: export makes it
        sh(["slmtune", "export-adapter", str(root / name), "--base", str(base), "--out", str(out)], pipeline_run)
        paths[name] = root / name
        paths[f"{name}_file"] = out
    return paths


def prompts(pipeline_run: Path, count: int = 12) -> list[list[int]]:
    from slmtune.data import read_jsonl
    from slmtune.models import load_tokenizer

    tokenizer = load_tokenizer(pipeline_run / "models/base")
    rows = read_jsonl(pipeline_run / "data/prepared/test.jsonl")[:count]
    return [tokenizer(row["prompt"], add_special_tokens=False)["input_ids"] for row in rows]


def last_logits(model, ids: list[int], adapters=None, name: str | None = None) -> np.ndarray:
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1, batch_size=1)
    generator = og.Generator(model, params)
    if adapters is not None:
        generator.set_active_adapter(adapters, name)
    generator.append_tokens(np.asarray(ids, dtype=np.int32))
    return np.array(generator.get_logits()[0, -1])


def torch_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].numpy()


def test_with_no_adapter_active_the_lora_base_is_the_int4_base(built, pipeline_run):
    from slmtune.ortgenai import load_model

    plain, lora = load_model(built["int4_base"]), load_model(built["lora_base"])
    for ids in prompts(pipeline_run):
        assert np.abs(last_logits(plain, ids) - last_logits(lora, ids)).max() <= 1e-5


def test_an_active_adapter_is_as_exact_as_its_merged_int4_build(built, pipeline_run, tmp_path):
    import onnxruntime_genai as og
    from peft import PeftModel

    from slmtune.config import load_params
    from slmtune.models import load_causal_lm, load_tokenizer
    from slmtune.ortgenai import load_model
    from slmtune.stages.build_int4 import build

    peft_model = PeftModel.from_pretrained(load_causal_lm(built["base"]), str(built["wide"]))
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    load_tokenizer(built["base"]).save_pretrained(merged)
    shutil.copy2(built["base"] / "slmtune_task.json", merged)
    build(load_params(pipeline_run / "params.yaml"), merged, tmp_path / "int4_merged")
    peft_model = PeftModel.from_pretrained(load_causal_lm(built["base"]), str(built["wide"]))
    lora, merged_int4 = load_model(built["lora_base"]), load_model(tmp_path / "int4_merged")
    adapters = og.Adapters(lora)
    adapters.load(str(built["wide_file"]), "wide")
    adapter_error, merged_error = [], []
    for ids in prompts(pipeline_run):
        reference = torch_logits(peft_model, ids)
        adapter_error.append(np.abs(last_logits(lora, ids, adapters, "wide") - reference).max())
        merged_error.append(np.abs(last_logits(merged_int4, ids) - reference).max())
    assert np.median(adapter_error) <= 1.5 * np.median(merged_error)  # int4 rounding of the base, nothing more
    assert np.median(adapter_error) < 0.5


def test_adapters_switch_between_generators_of_one_model(built, pipeline_run):
    import onnxruntime_genai as og

    from slmtune.ortgenai import load_model

    alone = {}
    for name in ADAPTERS:
        model = load_model(built["lora_base"])
        adapters = og.Adapters(model)
        adapters.load(str(built[f"{name}_file"]), name)
        alone[name] = [last_logits(model, ids, adapters, name) for ids in prompts(pipeline_run, 4)]
    shared = load_model(built["lora_base"])
    adapters = og.Adapters(shared)
    for name in ADAPTERS:
        adapters.load(str(built[f"{name}_file"]), name)
    for i, ids in enumerate(prompts(pipeline_run, 4)):
        for name in ("narrow", "wide", "narrow"):
            assert np.array_equal(last_logits(shared, ids, adapters, name), alone[name][i])
        assert not np.allclose(alone["wide"][i], alone["narrow"][i])


def test_an_adapter_for_another_base_or_shape_is_refused_by_name(built, tmp_path):
    import torch

    from slmtune.models import load_causal_lm

    other = tmp_path / "other_base"
    model = load_causal_lm(built["base"])
    with torch.no_grad():
        model.model.norm.weight.add_(0.01)  # another base: one tensor differs
    model.save_pretrained(other)
    export_adapter(built["wide"], other, tmp_path / "wide.onnx_adapter")
    with pytest.raises(
        ModelError, match=r"made for another base model \(weights [0-9a-f]{12}, this base [0-9a-f]{12}\)"
    ):
        check_adapter(built["lora_base"], tmp_path / "wide.onnx_adapter")

    card = AdapterCard.load(card_path(built["narrow_file"]))
    name = next(iter(card.shapes))
    shapes = {**card.shapes, name: [card.shapes[name][0] * 2, card.shapes[name][1]]}
    moved = tmp_path / "wider.onnx_adapter"
    shutil.copy2(built["narrow_file"], moved)
    AdapterCard(**{**card.__dict__, "shapes": shapes}).save(card_path(moved))
    with pytest.raises(ModelError, match=rf"{name} \(layer 0\) is \d+x\d+ \(in x out\) in the adapter but \d+x\d+"):
        check_adapter(built["lora_base"], moved)
    assert check_adapter(built["lora_base"], built["wide_file"]).rank == 8


def test_what_the_runtime_cannot_apply_is_refused_at_export(built, pipeline_run, tmp_path):
    with pytest.raises(ModelError, match=r"trains whole modules \(\['embed_tokens', 'lm_head'\].*modules_to_save=\[\]"):
        export_adapter(pipeline_run / "models/adapter", built["base"], tmp_path / "tone.onnx_adapter")
    dora = tmp_path / "dora"
    shutil.copytree(built["narrow"], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ModelError, match="DoRA adapter; its magnitude vectors"):
        export_adapter(dora, built["base"], tmp_path / "dora.onnx_adapter")
    assert not list(tmp_path.glob("*.onnx_adapter"))  # nothing written for a refused adapter


def test_classify_with_an_adapter_scores_with_its_weights_and_refuses_a_misfit(built, pipeline_run, tmp_path):
    from peft import PeftModel

    from slmtune.models import load_causal_lm, load_tokenizer
    from slmtune.prompts import Task
    from slmtune.scoring import TorchClassifier, label_probabilities

    phrases = [json.loads(line)["phrase"] for line in (pipeline_run / "data/prepared/test.jsonl").open()][:24]
    rows = tmp_path / "phrases.jsonl"
    rows.write_text("".join(json.dumps({"phrase": p}) + "\n" for p in phrases))

    def classify(*extra: str) -> list[dict]:
        out = tmp_path / "out.jsonl"
        command = ["slmtune", "classify", "--input", str(rows), "--output", str(out), "--scores", *extra]
        sh([*command, "--model-path", str(built["lora_base"])], tmp_path)
        return [json.loads(line)["scores"] for line in out.read_text().splitlines()]

    def torch_scores(model) -> list[dict]:
        task = Task.load(built["base"])
        return label_probabilities(TorchClassifier(model, load_tokenizer(built["base"]), task, 32, 4), phrases)

    def worst(a: list[dict], b: list[dict]) -> float:
        return max(abs(x[k] - y[k]) for x, y in zip(a, b, strict=True) for k in x)

    with_adapter = classify("--adapter", str(built["wide_file"]))
    without = classify()
    peft_model = PeftModel.from_pretrained(load_causal_lm(built["base"]), str(built["wide"]))
    base_error = worst(without, torch_scores(load_causal_lm(built["base"])))
    assert worst(with_adapter, torch_scores(peft_model)) <= 2 * base_error + 0.01  # the adapter's weights, in int4
    assert worst(with_adapter, without) > 3 * base_error  # and it was active: it moves scores past int4 error

    misfit = tmp_path / "misfit.onnx_adapter"
    shutil.copy2(built["narrow_file"], misfit)
    card = AdapterCard.load(card_path(built["narrow_file"]))
    AdapterCard(**{**card.__dict__, "base_sha256": "0" * 64}).save(card_path(misfit))
    command = ["slmtune", "classify", "what a day", "--model-path", str(built["lora_base"]), "--adapter", str(misfit)]
    refused = sh(command, tmp_path, check=False)
    assert refused.returncode == 1 and "made for another base model (weights 000000000000" in refused.stderr
    generate = ["slmtune", "generate", "hi", "--model-path", str(built["lora_base"]), "--adapter"]
    refused = sh([*generate, str(built["wide_file"])], tmp_path, check=False)
    assert refused.returncode == 1 and "fine-tuned for classification, not generation" in refused.stderr


def test_one_server_switches_adapters_between_requests(built, pipeline_run, tmp_path):
    import asyncio

    import httpx

    from serving import API_KEY, ServerProcess

    phrases = [json.loads(line)["phrase"] for line in (pipeline_run / "data/prepared/test.jsonl").open()][:16]
    from slmtune.scoring import label_probabilities, load_classifier

    offline = {}  # what `slmtune classify --adapter` computes (its command is tested above), in this process
    for name in ("wide", "narrow"):
        classifier = load_classifier(
            built["lora_base"], batch_size=32, max_new_tokens=4, runtime_adapter=built[f"{name}_file"]
        )
        offline[name] = label_probabilities(classifier, phrases)
    adapters = [arg for name in ("wide", "narrow") for arg in ("--adapter", f"{name}={built[f'{name}_file']}")]
    server = ServerProcess(built["lora_base"], tmp_path / "server.log", *adapters)
    try:
        with server.client() as client:
            models = client.get("/v1/models").json()["data"]
            assert [m["id"] for m in models] == ["lora_base", "wide", "narrow"]
            assert models[1]["parent"] == "lora_base" and models[1]["labels"] == models[0]["labels"]

        async def one(client, name: str, phrase: str) -> dict:
            answer = await client.post("/v1/classify", json={"input": phrase, "scores": True, "model": name})
            assert answer.status_code == 200, answer.text
            return answer.json()["data"][0]["scores"]

        async def mixed() -> list[tuple[str, int, dict]]:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
                jobs = [(name, i) for i in range(len(phrases)) for name in ("wide", "narrow")]
                scores = await asyncio.gather(*(one(client, name, phrases[i]) for name, i in jobs))
            return [(name, i, s) for (name, i), s in zip(jobs, scores, strict=True)]

        for name, i, scores in asyncio.run(mixed()):  # both adapters in flight at once, in one process
            assert max(abs(scores[k] - offline[name][i][k]) for k in scores) <= 1e-4, (name, i)
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0
