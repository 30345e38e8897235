"""Stage eval: every artifact on the same test split: accuracy, F1, confusion, size (classification) or
perplexity, exact match, chrF, size (generation); latency apart."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from slmtune.artifacts import Artifact, artifact
from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import Params
from slmtune.stages.common import parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--test", type=Path, default=Path("data/prepared/test.jsonl"))
    parse.add_argument("--models", type=Path, default=Path("models"))
    parse.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parse.add_argument("--plots", type=Path, default=Path("plots/confusion"))
    parse.add_argument("--answers", type=Path, default=Path("plots/answers"), help="every answer beside the truth")
    parse.add_argument("--comparison", type=Path, default=Path("plots/artifacts.json"))
    parse.add_argument("--text-scores", type=Path, default=Path("plots/generation.json"), help="generation's bars")
    parse.add_argument("--latency", type=Path, default=Path("plots/latency.json"), help="wall-clock bar chart")
    parse.add_argument("--run-metrics", type=Path, default=Path("metrics/eval_run.json"), help="wall-clock figures")
    args = parse.parse_args(argv)
    outputs = Outputs(
        args.metrics, args.plots, args.answers, args.comparison, args.text_scores, args.latency, args.run_metrics
    )
    run("eval", lambda: evaluate(stage_params(args.params, scipy=True), args.test, args.models, outputs))


@dataclass(frozen=True)
class Outputs:
    """Where eval writes: reproducible figures (metrics, confusion, comparison) and wall-clock ones (latency)."""

    metrics: Path
    confusion: Path  # classification only: one confusion matrix per artifact
    answers: Path  # per artifact, every test example's answer beside the reference
    comparison: Path
    text_scores: Path  # generation: perplexity, chrF and exact match per artifact ([] for classification)
    latency: Path
    run_metrics: Path


def classifier_for(item: Artifact, models: Path, params: Params):
    """Build the classifier for one artifact."""
    from slmtune.scoring import load_classifier

    options = {"batch_size": params.eval.batch_size, "max_new_tokens": params.eval.max_new_tokens, "hw": params.hw}
    adapter = models / item.adapter if item.adapter else None
    return load_classifier(models / item.folder, adapter=adapter, **options)


def artifact_size(item: Artifact, models: Path) -> int:
    from slmtune.models import folder_size_bytes

    return folder_size_bytes(*item.folders(models))


def read_test_split(test: Path, labels: list[str]) -> tuple[list[str], list[str]]:
    """Phrases and true labels of the prepared test split, each row checked."""
    from slmtune.data import read_records
    from slmtune.errors import DataError

    phrases, truth = [], []
    for line, row in read_records(test):
        if not (isinstance(row, dict) and isinstance(row.get("phrase"), str) and row.get("label") in labels):
            raise DataError(
                f"{test}:{line}: not a prepared row (a 'phrase' and a 'label' among {labels}); "
                "rerun prepare (`dvc repro prepare`) or restore it with `dvc checkout`"
            )
        phrases.append(row["phrase"])
        truth.append(row["label"])
    if not phrases:
        raise DataError(f"{test}: no rows; rerun prepare (`dvc repro prepare`)")
    return phrases, truth


def check_artifacts(names: list[str], models: Path) -> None:
    """Check every artifact's folder before evaluating any (evaluation takes a while)."""
    from slmtune.models import check_adapter_folder, check_model_folder, check_tokenizer_folder
    from slmtune.prompts import Task
    from slmtune.scoring import is_onnx_folder

    for item in map(artifact, names):
        folder = models / item.folder
        if item.adapter:
            check_adapter_folder(models / item.adapter)
        if not is_onnx_folder(folder):
            check_model_folder(folder)
        check_tokenizer_folder(folder)
        Task.load(folder)


def evaluate(params: Params, test: Path, models: Path, outputs: Outputs) -> None:
    """Evaluate every artifact of `eval.artifacts` on the test split; write metrics and plots; apply the gate."""
    if params.data.kind == "generation":
        evaluate_generation(params, test, models, outputs)
        return
    labels = list(params.data.labels)
    phrases, truth = read_test_split(test, labels)
    check_artifacts(params.eval.artifacts, models)
    from slmtune.evaluation import (
        agreement,
        comparison_rows,
        confusion_rows,
        evaluate_artifact,
        latency_rows,
        summarise,
    )

    results = {}
    for item in map(artifact, params.eval.artifacts):
        print(f"[slmtune] evaluating {item.title} on {len(phrases)} test phrases", flush=True)
        classifier = classifier_for(item, models, params)
        results[item.name] = evaluate_artifact(
            item.name,
            classifier,
            phrases,
            artifact_size(item, models),
            params.eval.latency_examples,
            params.eval.latency_repetitions,
        )
        del classifier
        gc.collect()
    metrics = {name: summarise(result, truth, labels) for name, result in results.items()}
    pairs = [("adapter", "merged"), ("merged", "int4"), ("base", "merged")]
    metrics["agreement"] = {
        f"{a}_vs_{b}": agreement(results[a].predictions, results[b].predictions)
        for a, b in pairs
        if a in results and b in results
    }
    metrics["test_examples"] = len(phrases)
    metrics["gate"] = gate(results, truth, params)
    with atomic_outputs(outputs.confusion, outputs.answers) as (plots_tmp, answers_tmp):
        for name, result in results.items():
            atomic_write_json(plots_tmp / f"{name}.json", confusion_rows(truth, result.predictions))
            answers = zip(phrases, truth, result.predictions, result.generated, strict=True)
            rows = [{"phrase": p, "label": t, "prediction": s, "generated": g} for p, t, s, g in answers]
            atomic_write_json(answers_tmp / f"{name}.json", rows)
    atomic_write_json(outputs.comparison, comparison_rows(metrics, list(results)))
    atomic_write_json(outputs.text_scores, [])  # generation's plots have nothing to draw for a label task
    latency = latency_rows(results)
    atomic_write_json(outputs.latency, latency)
    atomic_write_json(outputs.run_metrics, {row["artifact"]: {"latency_ms": row["latency_ms"]} for row in latency})
    atomic_write_json(outputs.metrics, metrics)  # written even when the gate fails, so the figures can be read
    _print_table(metrics, results)
    check_gate(metrics["gate"])


def read_generation_test(test: Path, tokenizer_folder: Path):
    """The prepared test split of a generative task, each row checked, with its ids and loss labels."""
    from slmtune.data import read_records
    from slmtune.errors import DataError
    from slmtune.generation_eval import TestRows
    from slmtune.models import load_tokenizer
    from slmtune.tokenization import tokenize_segments

    rows = []
    for line, row in read_records(test):
        fields_ok = isinstance(row, dict) and all(isinstance(row.get(key), str) for key in ("prompt", "response"))
        if not (fields_ok and isinstance(row.get("segments"), list)):
            raise DataError(
                f"{test}:{line}: not a prepared row of a generative task ('prompt', 'response', 'segments'); "
                "rerun prepare (`dvc repro prepare`) or restore it with `dvc checkout`"
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{test}: no rows; rerun prepare (`dvc repro prepare`)")
    columns = tokenize_segments(load_tokenizer(tokenizer_folder), [row["segments"] for row in rows])
    return TestRows(
        [row["prompt"] for row in rows], [row["response"] for row in rows], columns["input_ids"], columns["labels"]
    )


def evaluate_generation(params: Params, test: Path, models: Path, outputs: Outputs) -> None:
    """Every artifact of a generative task: perplexity, exact match, chrF, size; latency and tokens/s apart."""
    from slmtune.generation import Sampling, load_generator
    from slmtune.generation_eval import (
        agreement,
        comparison_rows,
        evaluate_generator,
        exact_rows,
        latency_rows,
        quantization_gate,
        summarise,
        text_score_rows,
    )

    check_artifacts(params.eval.artifacts, models)
    rows = read_generation_test(test, models / artifact(params.eval.artifacts[0]).folder)
    sampling = Sampling(max_new_tokens=params.eval.max_new_tokens)
    timing = (params.eval.latency_examples, params.eval.latency_repetitions)
    results = {}
    for item in map(artifact, params.eval.artifacts):
        print(f"[slmtune] evaluating {item.title} on {len(rows.prompts)} test prompts", flush=True)
        adapter = models / item.adapter if item.adapter else None
        generator = load_generator(
            models / item.folder, batch_size=params.eval.batch_size, adapter=adapter, hw=params.hw
        )
        size = artifact_size(item, models)
        results[item.name] = evaluate_generator(item.name, generator, rows, size, sampling, timing)
        del generator
        gc.collect()
    metrics: dict = {name: summarise(result, rows.references) for name, result in results.items()}
    pairs = [("adapter", "merged"), ("merged", "int4")]
    metrics["agreement"] = {
        f"{a}_vs_{b}": agreement(results[a].outputs, results[b].outputs) for a, b in pairs if {a, b} <= set(results)
    }
    metrics["test_examples"] = len(rows.prompts)
    if {"merged", "int4"} <= set(results):
        eval_cfg = params.eval
        figures = (results["merged"], results["int4"], rows.references)
        metrics["gate"] = quantization_gate(*figures, eval_cfg.max_int4_ppl_ratio, eval_cfg.max_int4_drop)
    else:
        metrics["gate"] = {"skipped": "merged or int4 not in eval.artifacts"}
    with atomic_outputs(outputs.confusion, outputs.answers) as (plots_tmp, answers_tmp):
        for name, result in results.items():
            atomic_write_json(plots_tmp / f"{name}.json", exact_rows(rows.references, result.outputs))
            answers = zip(rows.prompts, rows.references, result.outputs, strict=True)
            atomic_write_json(
                answers_tmp / f"{name}.json", [{"prompt": p, "reference": r, "output": o} for p, r, o in answers]
            )
    atomic_write_json(outputs.comparison, comparison_rows(metrics, list(results)))
    atomic_write_json(outputs.text_scores, text_score_rows(metrics, list(results)))
    latency = latency_rows(results)
    atomic_write_json(outputs.latency, latency)
    run_figures = {row["artifact"]: {k: v for k, v in row.items() if k != "artifact"} for row in latency}
    atomic_write_json(outputs.run_metrics, run_figures)
    atomic_write_json(outputs.metrics, metrics)
    _print_generation_table(metrics, results)
    check_gate(metrics["gate"], generation=True)


def _print_generation_table(metrics: dict, results: dict) -> None:
    print(f"{'artifact':<10}{'perplexity':>12}{'exact':>8}{'chrF':>8}{'latency_ms':>12}{'tokens/s':>10}{'size_mb':>10}")
    for name, result in results.items():
        m = metrics[name]
        print(
            f"{name:<10}{m['perplexity']:>12.4f}{m['exact_match']:>8.4f}{m['chrf']:>8.2f}"
            f"{result.latency_ms:>12.2f}{result.tokens_per_s:>10.1f}{m['size_mb']:>10.2f}"
        )


def gate(results: dict, truth: list[str], params: Params) -> dict:
    """The quantization gate's figures, or why it was skipped (int4 or merged not evaluated)."""
    from slmtune.evaluation import quantization_gate

    missing = [name for name in ("merged", "int4") if name not in results]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not in eval.artifacts"}
    return quantization_gate(
        results["merged"], results["int4"], truth, params.eval.max_int4_drop, params.eval.max_disagreement
    )


def check_gate(figures: dict, generation: bool = False) -> None:
    """Print the gate's verdict; fail the stage (after every figure is written) when int4 fell too far behind."""
    from slmtune import evaluation, generation_eval
    from slmtune.errors import VerificationError

    messages = generation_eval if generation else evaluation
    if "skipped" in figures:
        print(f"[slmtune] quantization gate skipped: {figures['skipped']}", flush=True)
    elif figures["passed"]:
        print(f"[slmtune] quantization gate passed: {messages.gate_summary(figures)}", flush=True)
    else:
        raise VerificationError(messages.gate_failure_message(figures))


def _print_table(metrics: dict, results: dict) -> None:
    print(f"{'artifact':<10}{'accuracy':>10}{'macro_f1':>10}{'gen_acc':>10}{'latency_ms':>12}{'size_mb':>10}")
    for name, result in results.items():
        m = metrics[name]
        print(
            f"{name:<10}{m['accuracy']:>10.4f}{m['macro_f1']:>10.4f}{m['generation_accuracy']:>10.4f}"
            f"{result.latency_ms:>12.2f}{m['size_mb']:>10.2f}"
        )


if __name__ == "__main__":
    main()
