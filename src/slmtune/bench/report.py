"""The benchmark's outputs: targets with pass/miss, results.json, a README table and a PNG plot."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from slmtune.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from slmtune.bench.models import ARTIFACTS, TITLES

RESULTS, TABLE, PLOT = "results.json", "README.md", "bench.png"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured ratio (of medians) and pass or miss."""
    generation, latency = results["generation"], results["classification"]
    size, training = results["size"], results["training"]
    decode = _ratio(
        generation["onnx_int4"]["decode_tokens_per_s"]["median"],
        generation["pytorch_fp32"]["decode_tokens_per_s"]["median"],
    )
    faster = _ratio(
        latency["pytorch_fp32"]["batch1_ms_per_phrase"]["median"],
        latency["onnx_int4"]["batch1_ms_per_phrase"]["median"],
    )
    smaller = _ratio(size["onnx_int4"]["bytes"], size["fp32_safetensors_bytes"])
    speedup = training["speedup"]
    return [
        _target("decode", "int4 ONNX decode tokens/s over PyTorch fp32's (batch 1)", decode, ">=", 3.0),
        _target("classification", "PyTorch fp32 over int4 ONNX classification latency (batch 1)", faster, ">=", 1.5),
        _target("size", "int4 ONNX folder over the fp32 safetensors size", smaller, "<=", 0.2),
        {
            **_target("training", "padding-free over padded training tokens/s", speedup, ">=", 1.5),
            "losses_agree": training["losses_agree"],
            "passed": speedup >= 1.5 and bool(training["losses_agree"]),
        },
    ]


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)


def _target(key: str, what: str, measured: float, comparison: str, goal: float) -> dict[str, Any]:
    passed = measured >= goal if comparison == ">=" else measured <= goal
    return {"key": key, "target": what, "goal": f"{comparison} {goal}x", "measured": measured, "passed": passed}


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, README.md (keeping the sections other benchmarks wrote) and the plot, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULTS, results)
    kept = _sections(out / TABLE)
    atomic_write_text(out / TABLE, markdown(results) + "".join(f"\n{section}" for section in kept))
    atomic_write_bytes(out / PLOT, plot_png(results))
    return [out / RESULTS, out / TABLE, out / PLOT]


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _sections(path: Path) -> list[str]:
    """The marked sections of a README (`replace_section`'s), markers included, in order."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return [match.group(0) for match in re.finditer(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->\n", text, flags=re.S)]


def replace_section(path: Path, name: str, body: str) -> None:
    """Put `body` between `name`'s markers in the README at `path` (appended if absent), atomically."""
    start, end = _markers(name)
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    section = f"{start}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", flags=re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}"
    atomic_write_text(path, text)


def _spread(figure: dict[str, Any], digits: int = 1) -> str:
    """'12.3 [11.9–13.0]': median and range."""
    return f"{figure['median']:,.{digits}f} [{figure['min']:,.{digits}f}–{figure['max']:,.{digits}f}]"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def markdown(results: dict[str, Any]) -> str:
    """The README of bench/: what was measured, how, and the tables."""
    machine, settings, model = results["machine"], results["settings"], results["model"]
    batch = settings["batch"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m slmtune.bench`) on {results['created']}, in "
        f"{results['wall_time_s'] / 60:.1f} minutes: {machine['cpu_count']} CPU cores, torch {machine['torch']}, "
        f"transformers {machine['transformers']}, onnxruntime {machine['onnxruntime']}, "
        f"onnxruntime-genai {machine['onnxruntime_genai']}.",
        "",
        f"Model: `model={settings['model']}`, a randomly initialised Phi-3 (Phi3ForCausalLM) of "
        f"{model['parameters'] / 1e6:.0f}M parameters (hidden {model['hidden_size']}, {model['num_hidden_layers']} "
        f"layers, vocabulary {model['vocab_size']:,}), built by `prepare` like the tiny default. Each figure is the "
        f"median of {_count(settings['repetitions'], 'repetition')} after {_count(settings['warmup'], 'warm-up')}, "
        "with the range in "
        "brackets; the artifacts take turns within each repetition, so a busy spell slows them alike. "
        f"Prompts are the test split's phrases in the chat template (about {results['prompt_tokens']} tokens).",
        "",
        "## Inference",
        "",
        f"| artifact | size (MB) | classify, batch 1 (ms/phrase) | classify, batch {batch} (phrases/s) | "
        f"decode, batch 1 (tokens/s) | prompt (tokens/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ARTIFACTS:
        cls, gen = results["classification"][name], results["generation"][name]
        lines.append(
            f"| {TITLES[name]} | {results['size'][name]['mb']:,.1f} | {_spread(cls['batch1_ms_per_phrase'])} | "
            f"{_spread(cls['batch_phrases_per_s'], 2)} | {_spread(gen['decode_tokens_per_s'])} | "
            f"{_spread(gen['prompt_tokens_per_s'], 0)} |"
        )
    lines += [
        "",
        f"Classification is label scoring (`slmtune.scoring.predict`): the log-probability of each label's "
        f"completion after the prompt, over {settings['latency_phrases']} phrases one at a time, then "
        f"{batch} at once (classifier batch size {settings['classifier_batch_size']} sequences). Decode is greedy "
        f"generation of {settings['new_tokens']} tokens at batch 1, timed after the first token; prompt is the "
        "first pass over the prompt.",
        "",
        f"## Eval throughput ({batch} phrases at once)",
        "",
        f"| artifact | label scoring (phrases/s) | greedy generation, {settings['eval_new_tokens']} new tokens "
        "(phrases/s) | scoring / generation |",
        "|---|---|---|---|",
    ]
    for name in ARTIFACTS:
        ev = results["eval_throughput"][name]
        lines.append(
            f"| {TITLES[name]} | {_spread(ev['label_scoring_phrases_per_s'], 2)} | "
            f"{_spread(ev['greedy_generation_phrases_per_s'], 2)} | {ev['scoring_over_generation']:.2f}x |"
        )
    lines += _training_table(results["training"], "the tone phrases", settings)
    if "training_generative" in results:
        lines += _training_table(results["training_generative"], "the generative task (home_commands)", settings)
    if "adapters" in results:
        lines += _adapters_table(results["adapters"], settings)
    lines += [
        "",
        "## Targets",
        "",
        "| target | goal | measured | result |",
        "|---|---|---|---|",
    ]
    for target in results["targets"]:
        lines.append(
            f"| {target['target']} | {target['goal']} | {target['measured']:.2f}x | "
            f"{'pass' if target['passed'] else 'miss'} |"
        )
    lines += ["", f"![latency and size per artifact]({PLOT})", ""]
    return "\n".join(lines)


def _adapters_table(figures: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """Runtime adapters on the LoRA base vs merged int4 models (slmtune.bench.adapters)."""
    ratios, switch, shape = figures["ratios"], figures["switch"], figures["adapter"]
    lines = [
        "",
        f"## Runtime adapters (LoRA r={shape['rank']} on {', '.join(shape['target_modules'])})",
        "",
        "| | adapter active on the LoRA base | merged int4 | adapter / merged |",
        "|---|---|---|---|",
        f"| decode, batch 1 (tokens/s) | {_spread(figures['decode_tokens_per_s']['adapter'])} | "
        f"{_spread(figures['decode_tokens_per_s']['merged'])} | {ratios['decode_adapter_over_merged']:.2f}x |",
        f"| classify, batch 1 (ms/phrase) | {_spread(figures['batch1_ms_per_phrase']['adapter'])} | "
        f"{_spread(figures['batch1_ms_per_phrase']['merged'])} | {ratios['latency_adapter_over_merged']:.2f}x |",
        "",
        "| N tasks | base + N adapters: disk (MB) | N merged int4: disk (MB) | ratio | base + N adapters: "
        "resident (MB) | N merged int4: resident (MB) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for count, row in figures["footprint"].items():
        lines.append(
            f"| {count} | {row['adapters']['disk_mb']:,.1f} | {row['merged']['disk_mb']:,.1f} | "
            f"{row['disk_mb_adapters_over_merged']:.2f}x | {row['adapters']['resident_mb']:,.1f} | "
            f"{row['merged']['resident_mb']:,.1f} | {row['resident_mb_adapters_over_merged']:.2f}x |"
        )
    return [
        *lines,
        "",
        f"An adapter file is {next(iter(figures['footprint'].values()))['adapters']['adapter_file_mb']:.2f} MB. "
        f"Loading one takes {_spread(switch['load_ms'], 2)} ms; making the other of two adapters active on a new "
        f"generator takes {_spread(switch['set_active_ms'], 3)} ms (then the prompt and first token, "
        f"{_spread(switch['prompt_and_first_token_ms'])} ms). Resident memory is what a fresh process holds once "
        "it has loaded everything and generated 4 tokens with each model or adapter, over what it held before "
        "(the runtime loaded); the merged models are separate folders, as separate tasks would be. Decode generates "
        f"{settings['new_tokens']} tokens as above. The adapters are seeded random LoRA adapters of the training "
        "settings' shape: what they cost depends on their shapes, not their values (`slmtune.bench.adapters`).",
    ]


def _training_table(training: dict[str, Any], data: str, settings: dict[str, Any]) -> list[str]:
    """The padded vs padding-free table of one data set."""
    lines = [
        "",
        f"## Training throughput on {data} (train_lora, {training['steps']} steps of {training['batch_size']} rows "
        "per run)",
        "",
        "| batching | non-padding tokens/s | per step (tokens/s) | final loss | mean loss |",
        "|---|---|---|---|---|",
    ]
    for mode, title in (("padded", "per-batch padding"), ("padding_free", "padding-free (`train.padding_free`)")):
        run = training[mode]
        lines.append(
            f"| {title} | {run['tokens_per_second']:,.1f} | {_spread(run['per_step_tokens_per_second'])} | "
            f"{run['final_loss']:.4f} | {run['mean_loss']:.4f} |"
        )
    return [
        *lines,
        "",
        f"Padding-free over padded: {training['speedup']:.2f}x. Same rows, seed and steps; "
        f"{training['padded']['runs']} runs per mode in the order {', '.join(training['order'])}, each run's first "
        f"step a warm-up, not timed. Trained on {settings['train_model']}. Rows average "
        f"{training['mean_row_tokens']} tokens; a padded batch of {training['batch_size']} computes "
        f"{training['padding_overhead']:.2f} tokens per real token, which bounds what dropping the padding can gain.",
    ]


def plot_png(results: dict[str, Any]) -> bytes:
    """Size, batch-1 classification latency and decode speed per artifact, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ARTIFACTS)
    titles = [TITLES[n].replace(" (merged)", "\n(merged)") for n in names]
    colours = ["#7f7f7f", "#1f77b4", "#2ca02c"]
    latency = _errors(results["classification"], names, "batch1_ms_per_phrase")
    decode = _errors(results["generation"], names, "decode_tokens_per_s")
    panels = [
        ("size on disk (MB)", [results["size"][n]["mb"] for n in names], None),
        ("classification latency, batch 1 (ms/phrase)", *latency),
        ("decode, batch 1 (tokens/s)", *decode),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 4))
    for axis, (title, values, errors) in zip(axes, panels, strict=True):
        axis.bar(titles, values, color=colours, yerr=errors, capsize=4)
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
        for x, value in enumerate(values):
            top = value + (errors[1][x] if errors else 0.0)  # above the error bar
            axis.annotate(f"{value:,.1f}", (x, top), ha="center", va="bottom", fontsize=8)
        axis.margins(y=0.12)
    figure.suptitle(f"slmtune bench: {results['settings']['model']}, {results['machine']['cpu_count']} CPU cores")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _errors(section: dict[str, Any], names: list[str], key: str) -> tuple[list[float], list[list[float]]]:
    """Medians and (below, above) distances to min and max, for error bars."""
    medians = [section[n][key]["median"] for n in names]
    below = [section[n][key]["median"] - section[n][key]["min"] for n in names]
    above = [section[n][key]["max"] - section[n][key]["median"] for n in names]
    return medians, [below, above]
