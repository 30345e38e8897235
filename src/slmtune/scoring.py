"""Classify phrases with any artifact: label scoring (log-probability) and greedy generation.

Both backends, PyTorch and ONNX Runtime GenAI, see the same prompts and score the same
completions, so every artifact is compared on equal terms.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from slmtune.config import HwConfig
from slmtune.errors import ModelError
from slmtune.prompts import Task, label_from_text, render_prompt
from slmtune.runtime_adapters import ActiveAdapter

LabelledIds = tuple[list[int], int]  # prompt + completion token ids, and where the completion starts
GENAI_MAX_BATCH = 32  # ONNX Runtime GenAI 0.18 refuses a larger batch_size


class Classifier(Protocol):
    """What evaluation and `slmtune classify` need from a model."""

    task: Task

    def prompts(self, phrases: list[str]) -> list[str]: ...

    def label_scores(self, prompts: list[str]) -> np.ndarray: ...

    def generate(self, prompts: list[str]) -> list[str]: ...

    @property
    def context_length(self) -> int: ...

    @property
    def label_token_ids(self) -> list[list[int]]: ...

    def prompt_lengths(self, prompts: list[str]) -> list[int]: ...


def overlong_prompts(classifier: Classifier, prompt_lengths: list[int]) -> list[tuple[int, int]]:
    """(index, tokens) of each prompt that, followed by the longest label, outgrows the model's context.

    Checked before any model call: a longer prompt would be refused by ONNX Runtime GenAI and
    silently mis-scored by PyTorch (positions past the context were never trained).
    """
    longest_label = max(len(ids) for ids in classifier.label_token_ids)
    limit = classifier.context_length
    return [(i, n + longest_label) for i, n in enumerate(prompt_lengths) if n + longest_label > limit]


def predict(classifier: Classifier, phrases: list[str]) -> list[str]:
    """The highest-scoring label for each phrase."""
    scores = classifier.label_scores(classifier.prompts(phrases))
    return [classifier.task.labels[i] for i in scores.argmax(axis=1)]


def label_probabilities(classifier: Classifier, phrases: list[str]) -> list[dict[str, float]]:
    """Each phrase's probability of every label, normalised over the task's labels (softmax of the scores)."""
    scores = classifier.label_scores(classifier.prompts(phrases)).astype(np.float64)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    return [dict(zip(classifier.task.labels, map(float, row), strict=True)) for row in probabilities]


def generated_labels(classifier: Classifier, phrases: list[str]) -> list[str]:
    """Greedy generation mapped to labels ('other' when the text is no label)."""
    texts = classifier.generate(classifier.prompts(phrases))
    return [label_from_text(text, classifier.task.labels) for text in texts]


class TorchClassifier:
    """A transformers causal LM (optionally wrapped by a peft adapter)."""

    def __init__(self, model, tokenizer, task: Task, batch_size: int, max_new_tokens: int):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        self._completion_ids = [self._ids(task.completions[label]) for label in task.labels]

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def label_token_ids(self) -> list[list[int]]:
        return self._completion_ids

    def prompt_lengths(self, prompts: list[str]) -> list[int]:
        return [len(self._ids(prompt)) for prompt in prompts]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompts(self, phrases: list[str]) -> list[str]:
        return [render_prompt(self.tokenizer, self.task.instruction, phrase) for phrase in phrases]

    def label_scores(self, prompts: list[str]) -> np.ndarray:
        """Sum of log-probabilities of each label's completion tokens after each prompt.

        Each prompt is processed once; its KV cache is then repeated for every label, so the
        labels' tokens cost a few positions each instead of a whole prompt each.
        """
        prompt_ids = [self._ids(prompt) for prompt in prompts]
        step = max(1, self.batch_size // len(self._completion_ids))  # prompts per forward pass
        return np.concatenate([self._score_prompts(prompt_ids[i : i + step]) for i in range(0, len(prompt_ids), step)])

    def _score_prompts(self, prompt_ids: list[list[int]]) -> np.ndarray:
        """A (prompts, labels) array: left-padded prompts in one pass, then all completions from their cache."""
        import torch

        completions = self._completion_ids
        ids, mask = left_padded(prompt_ids, self.tokenizer.pad_token_id or 0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Only the last position's logits: the lm_head over every position is costly.
        out = self._forward(ids, mask, positions, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].double(), dim=-1).cpu()
        scores = torch.stack([first[:, completion[0]] for completion in completions], dim=1)
        longest = max(len(completion) for completion in completions)
        if longest > 1:
            scores += self._follow_up_logprobs(out.past_key_values, mask, positions[:, -1], longest)
        return scores.numpy()

    def _follow_up_logprobs(self, cache, prompt_mask, last_position, longest: int):
        """Log-probabilities of every completion's tokens after its first, from the prompts' repeated cache."""
        import torch

        completions, labels = self._completion_ids, len(self._completion_ids)
        rows = prompt_mask.shape[0] * labels  # prompt-major: row = prompt * labels + label
        cache.batch_repeat_interleave(labels)
        follow = torch.full((rows, longest - 1), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        follow_mask = torch.zeros_like(follow)
        for row in range(rows):
            tokens = completions[row % labels][:-1]
            follow[row, : len(tokens)] = torch.tensor(tokens)
            follow_mask[row, : len(tokens)] = 1
        mask = torch.cat([prompt_mask.repeat_interleave(labels, dim=0), follow_mask], dim=1)
        positions = last_position.repeat_interleave(labels).unsqueeze(1) + 1 + torch.arange(longest - 1)
        logits = self._forward(follow, mask, positions, past_key_values=cache).logits.float().cpu().numpy()
        totals = np.zeros(rows)
        for row in range(rows):
            targets = completions[row % labels][1:]
            if targets:
                totals[row] = logprob_sum(logits[row, : len(targets)], targets)
        return torch.from_numpy(totals).reshape(-1, labels)

    def _forward(self, ids, mask, positions, **options):
        """One no-grad forward pass on the model's device, with the KV cache kept."""
        import torch

        with torch.no_grad():
            return self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                **options,
            )

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
    """An ONNX Runtime GenAI model folder (the int4 build).

    Label scoring has two strategies that give the same scores (a test checks it):
    - batched: `batch_size` prompt+completion rows, right-padded, in one teacher-forced prefill;
      pays on a GPU, but computes every prompt once per label;
    - cached: one prompt at a time, each processed once after the prefix all prompts share, then
      rewound to for each label. ONNX Runtime GenAI cannot fork a batch's KV cache (a batch takes
      one append_tokens; rewind goes to 0), so on a CPU, where compute is the cost, this is the
      faster one (2.5x batching's speed on the tiny model, 2 cores).
    `batched=None` picks by the model's device: batched on a GPU, cached on a CPU.
    """

    def __init__(
        self,
        folder: Path,
        task: Task,
        max_new_tokens: int,
        batch_size: int,
        batched: bool | None = None,
        threads: int = 0,
        adapter: Path | ActiveAdapter | None = None,
        loaded: tuple | None = None,
    ):
        from slmtune.models import load_tokenizer
        from slmtune.ortgenai import open_folder

        self.task, self.max_new_tokens, self.batch_size = task, max_new_tokens, batch_size
        self.folder = folder
        self.model, self.tokenizer = loaded or open_folder(folder, threads)  # `loaded`: shared with others
        self.adapter = ActiveAdapter.load(self.model, adapter) if isinstance(adapter, Path) else adapter

        self.hf_tokenizer = load_tokenizer(folder)  # renders the chat template
        self._completion_ids = [list(self.tokenizer.encode(task.completions[label])) for label in task.labels]
        self._pad = genai_pad_token_id(folder)
        self.batched = self.model.device_type != "CPU" if batched is None else batched
        self.context_length = genai_context_length(folder)

    @property
    def label_token_ids(self) -> list[list[int]]:
        return self._completion_ids

    def prompt_lengths(self, prompts: list[str]) -> list[int]:
        return [len(self.tokenizer.encode(prompt)) for prompt in prompts]

    def prompts(self, phrases: list[str]) -> list[str]:
        return [render_prompt(self.hf_tokenizer, self.task.instruction, phrase) for phrase in phrases]

    def _generator(self, max_length: int, batch_size: int = 1):
        from slmtune.ortgenai import new_generator

        return new_generator(self.model, self.adapter, max_length=max_length, do_sample=False, batch_size=batch_size)

    def label_scores(self, prompts: list[str]) -> np.ndarray:
        """Sum of log-probabilities of each label's completion tokens after each prompt."""
        prompt_ids = [list(self.tokenizer.encode(p)) for p in prompts]
        if not self.batched:
            return self._scores_cached(prompt_ids)
        sequences = labelled_sequences(prompt_ids, self._completion_ids)
        batch_size = min(self.batch_size, GENAI_MAX_BATCH)
        return score_in_batches(sequences, batch_size, self._score_batch, len(self.task.labels))

    def _scores_cached(self, prompt_ids: list[list[int]]) -> np.ndarray:
        """The shared prefix once; each prompt's rest once; each label's tokens after a rewind to the prompt."""
        shared = shared_prefix_length(prompt_ids)
        longest = max(len(ids) for ids in self._completion_ids)
        generator = self._generator(max(len(ids) for ids in prompt_ids) + longest)
        if shared:
            generator.append_tokens(np.asarray(prompt_ids[0][:shared], dtype=np.int32))
        scores = np.zeros((len(prompt_ids), len(self._completion_ids)))
        for row, ids in enumerate(prompt_ids):
            generator.rewind_to(shared)
            generator.append_tokens(np.asarray(ids[shared:], dtype=np.int32))
            after_prompt = generator.get_logits()[0, -1]
            for column, completion in enumerate(self._completion_ids):
                logits = [after_prompt]
                for token in completion[:-1]:
                    generator.append_tokens(np.asarray([token], dtype=np.int32))
                    logits.append(generator.get_logits()[0, -1])
                scores[row, column] = logprob_sum(np.stack(logits), completion)
                generator.rewind_to(len(ids))
        return scores

    def _score_batch(self, batch: list[LabelledIds]) -> np.ndarray:
        """One teacher-forced prefill of right-padded prompt+completion rows; logits at every position."""
        from slmtune.ortgenai import prefill_logits

        rows = [ids for ids, _ in batch]
        logits = prefill_logits(self.model, self.folder, rows, self._pad, "label scoring", self.adapter)
        return completion_logprobs(logits, batch)

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


def left_padded(sequences: list[list[int]], pad: int):
    """Token ids left-padded to the longest sequence, and the attention mask (torch tensors)."""
    import torch

    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        mask[row, width - len(tokens) :] = 1
    return ids, mask


def labelled_sequences(prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list[LabelledIds]:
    """Every prompt followed by every label's completion, prompt-major (row = prompt, column = label)."""
    return [(ids + completion, len(ids)) for ids in prompt_ids for completion in completion_ids]


def score_in_batches(
    sequences: list[LabelledIds], batch_size: int, score_batch: Callable[[list[LabelledIds]], np.ndarray], labels: int
) -> np.ndarray:
    """Score `sequences` `batch_size` at a time; a (prompts, labels) array of completion log-probabilities."""
    scores = [score_batch(sequences[i : i + batch_size]) for i in range(0, len(sequences), batch_size)]
    return np.concatenate(scores).reshape(-1, labels)


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all sequences share (0 for one), leaving at least one token of each unshared."""
    if len(sequences) < 2:
        return 0
    shortest = min(len(ids) for ids in sequences)
    length = 0
    while length < shortest - 1 and all(ids[length] == sequences[0][length] for ids in sequences):
        length += 1
    return length


def completion_logprobs(logits: np.ndarray, batch: list[LabelledIds]) -> np.ndarray:
    """Sum over each row's completion tokens of log p(token | everything before it), in float64."""
    # The logits at position t predict token t + 1.
    return np.array(
        [logprob_sum(logits[row, start - 1 : len(ids) - 1], ids[start:]) for row, (ids, start) in enumerate(batch)]
    )


def logprob_sum(logits: np.ndarray, targets: list[int]) -> float:
    """Sum of log-softmax(logits[i])[targets[i]], in float64: one row of logits per target token."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(logprobs[np.arange(len(targets)), targets].sum())


def genai_pad_token_id(folder: Path) -> int:
    """The id ONNX Runtime GenAI treats as padding (it masks it out of attention)."""
    import json

    return int(json.loads((folder / "genai_config.json").read_text())["model"].get("pad_token_id", 0))


def genai_context_length(folder: Path) -> int:
    """The context length an ONNX Runtime GenAI folder was built for (genai_config.json)."""
    import json

    return int(json.loads((folder / "genai_config.json").read_text())["model"]["context_length"])


def is_onnx_folder(folder: Path) -> bool:
    return (folder / "genai_config.json").is_file()


USE_INSTEAD = {"classification": "`slmtune classify`", "generation": "`slmtune generate` or `slmtune chat`"}


def check_model_kind(folder: Path, kind: str) -> Task:
    """The task card of a model folder that holds a `kind` model; a clear refusal otherwise."""
    from slmtune.models import RESTORE_HINT

    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found; {RESTORE_HINT}")
    if not is_onnx_folder(folder) and not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder}: neither an ONNX Runtime GenAI model (genai_config.json) nor a PyTorch one (config.json); "
            "point at a model folder such as models/int4 or models/merged"
        )
    task = Task.load(folder)
    if task.kind != kind:
        raise ModelError(
            f"{folder}: this model was fine-tuned for {task.kind} (its task card says so), not {kind}; "
            f"use {USE_INSTEAD[task.kind]} with it"
        )
    return task


def load_classifier(
    folder: Path | str,
    *,
    batch_size: int,
    max_new_tokens: int,
    adapter: Path | str | None = None,
    hw: HwConfig | None = None,
    runtime_adapter: Path | None = None,
) -> Classifier:
    """A classifier for a model folder: ONNX Runtime GenAI if it holds genai_config.json, else PyTorch.

    `batch_size` and `max_new_tokens` are `eval.batch_size` and `eval.max_new_tokens` (conf/eval/).
    `adapter` is a peft adapter folder (PyTorch); `runtime_adapter` an ONNX Runtime adapter file made
    active on a LoRA base (runtime_adapters.py), whose card then says the task.
    """
    from slmtune.models import load_adapter, load_causal_lm, load_tokenizer

    folder = Path(folder)
    threads = hw.num_threads if hw else 0
    if runtime_adapter is not None:
        from slmtune.runtime_adapters import adapter_task

        task = adapter_task(folder, runtime_adapter, "classification")
        return OnnxGenaiClassifier(folder, task, max_new_tokens, batch_size, threads=threads, adapter=runtime_adapter)
    task = check_model_kind(folder, "classification")
    if is_onnx_folder(folder):
        return OnnxGenaiClassifier(folder, task, max_new_tokens, batch_size, threads=threads)
    tokenizer = load_tokenizer(folder)  # each loader checks its own files, once
    model = load_causal_lm(folder, hw)
    if adapter is not None:
        model = load_adapter(model, adapter, folder)
    return TorchClassifier(model, tokenizer, task, batch_size, max_new_tokens)
