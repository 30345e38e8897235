"""Classify phrases with any artifact: label scoring (log-probability) and greedy generation.

Both backends, PyTorch and ONNX Runtime GenAI, see the same prompts and score the same
completions, so every artifact is compared on equal terms.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np

from slmtune.config import HwConfig
from slmtune.errors import ModelError
from slmtune.prompts import Task, label_from_text, render_prompt


class Classifier(Protocol):
    """What evaluation and `slmtune classify` need from a model."""

    task: Task

    def prompts(self, phrases: list[str]) -> list[str]: ...

    def label_scores(self, prompts: list[str]) -> np.ndarray: ...

    def generate(self, prompts: list[str]) -> list[str]: ...


def predict(classifier: Classifier, phrases: list[str]) -> list[str]:
    """The highest-scoring label for each phrase."""
    scores = classifier.label_scores(classifier.prompts(phrases))
    return [classifier.task.labels[i] for i in scores.argmax(axis=1)]


def generated_labels(classifier: Classifier, phrases: list[str]) -> list[str]:
    """Greedy generation mapped to labels ('other' when the text is no label)."""
    texts = classifier.generate(classifier.prompts(phrases))
    return [label_from_text(text, classifier.task.labels) for text in texts]


class TorchClassifier:
    """A transformers causal LM (optionally wrapped by a peft adapter)."""

    def __init__(self, model, tokenizer, task: Task, batch_size: int = 32, max_new_tokens: int = 4):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        self._completion_ids = [self._ids(task.completions[label]) for label in task.labels]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompts(self, phrases: list[str]) -> list[str]:
        return [render_prompt(self.tokenizer, self.task.instruction, phrase) for phrase in phrases]

    def label_scores(self, prompts: list[str]) -> np.ndarray:
        """Sum of log-probabilities of each label's completion tokens after each prompt."""
        sequences: list[tuple[list[int], int]] = []
        for prompt in prompts:
            prompt_ids = self._ids(prompt)
            sequences += [(prompt_ids + ids, len(prompt_ids)) for ids in self._completion_ids]
        scores = [
            self._score_batch(sequences[i : i + self.batch_size]) for i in range(0, len(sequences), self.batch_size)
        ]
        return np.concatenate(scores).reshape(len(prompts), len(self.task.labels))

    def _score_batch(self, batch: list[tuple[list[int], int]]) -> np.ndarray:
        import torch

        width = max(len(ids) for ids, _ in batch)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        with torch.no_grad():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        totals = np.zeros(len(batch))
        for row, (ids, start) in enumerate(batch):
            positions = torch.arange(start - 1, len(ids) - 1)
            targets = torch.tensor(ids[start:])
            totals[row] = float(logprobs[row, positions, targets].sum())
        return totals

    def generate(self, prompts: list[str]) -> list[str]:
        """Greedy decoding, left-padded batches, special tokens dropped."""
        import torch

        texts: list[str] = []
        self.tokenizer.padding_side = "left"
        for i in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[i : i + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            texts += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        self.tokenizer.padding_side = "right"
        return texts


class OnnxGenaiClassifier:
    """An ONNX Runtime GenAI model folder (the int4 build)."""

    def __init__(self, folder: Path, task: Task, max_new_tokens: int = 4):
        import onnxruntime_genai as og

        self.og, self.task, self.max_new_tokens = og, task, max_new_tokens
        try:
            self.model = og.Model(str(folder))
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as err:  # onnxruntime-genai raises plain RuntimeError
            raise ModelError(
                f"{folder}: ONNX Runtime GenAI cannot load this folder: {str(err).strip()[:300]}; "
                "restore it (`dvc checkout` or `dvc pull`) or rerun build_int4"
            ) from err
        from slmtune.models import load_tokenizer

        self.hf_tokenizer = load_tokenizer(folder)  # renders the chat template
        self._completion_ids = [list(self.tokenizer.encode(task.completions[label])) for label in task.labels]

    def prompts(self, phrases: list[str]) -> list[str]:
        return [render_prompt(self.hf_tokenizer, self.task.instruction, phrase) for phrase in phrases]

    def _generator(self, max_length: int):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False, batch_size=1)
        return self.og.Generator(self.model, params)

    def label_scores(self, prompts: list[str]) -> np.ndarray:
        """Process each prompt once, then rewind to it to score each label's tokens."""
        longest = max(len(ids) for ids in self._completion_ids)
        scores = np.zeros((len(prompts), len(self.task.labels)))
        for row, prompt in enumerate(prompts):
            prompt_ids = np.asarray(self.tokenizer.encode(prompt), dtype=np.int32)
            generator = self._generator(len(prompt_ids) + longest + 1)
            generator.append_tokens(prompt_ids)
            first = _log_softmax(generator.get_logits()[0, -1])
            for column, ids in enumerate(self._completion_ids):
                total, logprobs = float(first[ids[0]]), first
                for previous, token in pairwise(ids):
                    generator.append_tokens(np.asarray([previous], dtype=np.int32))
                    logprobs = _log_softmax(generator.get_logits()[0, -1])
                    total += float(logprobs[token])
                scores[row, column] = total
                generator.rewind_to(len(prompt_ids))
        return scores

    def generate(self, prompts: list[str]) -> list[str]:
        texts = []
        for prompt in prompts:
            prompt_ids = np.asarray(self.tokenizer.encode(prompt), dtype=np.int32)
            generator = self._generator(len(prompt_ids) + self.max_new_tokens)
            generator.append_tokens(prompt_ids)
            while not generator.is_done():
                generator.generate_next_token()
            new_tokens = generator.get_sequence(0)[len(prompt_ids) :]
            texts.append(self.tokenizer.decode(new_tokens))
        return texts


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def is_onnx_folder(folder: Path) -> bool:
    return (folder / "genai_config.json").is_file()


def load_classifier(
    folder: Path | str,
    batch_size: int = 32,
    max_new_tokens: int = 4,
    adapter: Path | str | None = None,
    hw: HwConfig | None = None,
) -> Classifier:
    """A classifier for a model folder: ONNX Runtime GenAI if it holds genai_config.json, else PyTorch."""
    from slmtune.models import check_model_folder, load_adapter, load_causal_lm, load_tokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not is_onnx_folder(folder) and not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder}: neither an ONNX Runtime GenAI model (genai_config.json) nor a PyTorch one (config.json); "
            "point at a model folder such as models/int4 or models/merged"
        )
    task = Task.load(folder)
    if is_onnx_folder(folder):
        return OnnxGenaiClassifier(folder, task, max_new_tokens)
    check_model_folder(folder)
    tokenizer = load_tokenizer(folder)
    model = load_causal_lm(folder, hw)
    if adapter is not None:
        model = load_adapter(model, adapter, folder)
    return TorchClassifier(model, tokenizer, task, batch_size, max_new_tokens)
