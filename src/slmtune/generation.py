"""Write text with any artifact of a generative task: greedy or sampled, whole or streamed, and score
reference answers (teacher-forced log-likelihood), on PyTorch and ONNX Runtime GenAI alike.

Both runtimes are given the same prompt text, rendered from the task card as in training, and the
same token ids (the folders carry the same tokenizer), so every artifact is compared on equal terms.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slmtune.config import HwConfig
from slmtune.errors import ModelError
from slmtune.prompts import Task, user_message
from slmtune.runtime_adapters import ActiveAdapter
from slmtune.scoring import GENAI_MAX_BATCH, genai_context_length, genai_pad_token_id, logprob_sum
from slmtune.tokenization import IGNORE_INDEX

TOP_K = 50  # sampling draws from the 50 likeliest tokens, on both runtimes (transformers' default)


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked: greedy at temperature 0, else sampled (seeded)."""

    max_new_tokens: int
    temperature: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise ModelError(f"max_new_tokens is {self.max_new_tokens}; it must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ModelError(f"temperature is {self.temperature}; it must be from 0 (greedy) to 2")


class TextGenerator(Protocol):
    """What evaluation, `slmtune generate` and `slmtune chat` need from a generative model."""

    task: Task
    hf_tokenizer: Any

    @property
    def context_length(self) -> int: ...

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]: ...

    def stream(self, prompt: str, sampling: Sampling) -> Iterator[str]: ...

    def nll(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> tuple[float, int]: ...


def chat_prompt(generator: TextGenerator, messages: list[tuple[str, str]]) -> str:
    """The prompt for a conversation so far (user and assistant turns), rendered as the model was trained."""
    task, turns = generator.task, list(messages)
    if task.prompt_template is not None:
        return "".join(content for _, content in turns)  # a template model has no chat: the text is the prompt
    first_user = next((i for i, (role, _) in enumerate(turns) if role == "user"), None)
    if task.instruction and first_user is not None:
        turns[first_user] = ("user", user_message(task.instruction, turns[first_user][1]))
    if task.system and not (turns and turns[0][0] == "system"):  # a conversation's own system message wins
        turns.insert(0, ("system", task.system))
    rendered = [{"role": role, "content": content} for role, content in turns]
    return generator.hf_tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)


def answer_room(prompt_tokens: int, max_new_tokens: int, context: int) -> int:
    """How many tokens an answer may have: `max_new_tokens`, or less where the context ends first."""
    if prompt_tokens >= context:
        raise ModelError(
            f"the prompt is {prompt_tokens} tokens; the model's context holds {context}: shorten the prompt"
            " (or, in a chat, /reset the conversation)"
        )
    return min(max_new_tokens, context - prompt_tokens)


def masked_nll(logits: np.ndarray, ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
    """Negative log-likelihood (float64) of the labelled tokens of one row, and how many there are."""
    positions = [p for p in range(1, len(ids)) if labels[p] != IGNORE_INDEX]
    if not positions:
        return 0.0, 0
    rows = logits[[p - 1 for p in positions]]  # the logits at position t predict token t + 1
    return -logprob_sum(rows, [int(ids[p]) for p in positions]), len(positions)


class TorchGenerator:
    """A transformers causal LM (optionally wrapped by a peft adapter)."""

    def __init__(self, model, tokenizer, task: Task, batch_size: int):
        self.model, self.hf_tokenizer, self.task, self.batch_size = model, tokenizer, task, batch_size
        self.device = next(model.parameters()).device

    def _options(self, sampling: Sampling) -> dict[str, Any]:
        import torch

        options: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": self._pad}
        if sampling.temperature > 0:
            torch.manual_seed(sampling.seed)
            return {**options, "do_sample": True, "temperature": sampling.temperature, "top_k": TOP_K}
        return {**options, "do_sample": False}

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def _pad(self) -> int:
        return self.hf_tokenizer.pad_token_id if self.hf_tokenizer.pad_token_id is not None else 0

    def _room(self, prompt_tokens: int, sampling: Sampling) -> Sampling:
        """`sampling` with max_new_tokens cut to what the model's context leaves after the prompt."""
        room = answer_room(prompt_tokens, sampling.max_new_tokens, self.context_length)
        return Sampling(room, sampling.temperature, sampling.seed)

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        """Left-padded batches; the new tokens decoded without special tokens."""
        import torch

        texts: list[str] = []
        tokenizer = self.hf_tokenizer
        tokenizer.padding_side = "left"
        try:
            for i in range(0, len(prompts), self.batch_size):
                batch = tokenizer(
                    prompts[i : i + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.device)
                room = self._room(batch["input_ids"].shape[1], sampling)
                with torch.no_grad():
                    output = self.model.generate(**batch, **self._options(room))
                texts += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        finally:
            tokenizer.padding_side = "right"
        return texts

    def stream(self, prompt: str, sampling: Sampling) -> Iterator[str]:
        """The answer piece by piece as it is decoded (transformers' TextIteratorStreamer)."""
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.hf_tokenizer, skip_prompt=True, skip_special_tokens=True)
        batch = self.hf_tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(self.device)

        room = self._room(batch["input_ids"].shape[1], sampling)

        def run() -> None:
            with torch.no_grad():
                self.model.generate(**batch, **self._options(room), streamer=streamer)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()

    def nll(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> tuple[float, int]:
        """Teacher-forced negative log-likelihood of the labelled tokens, summed, and their count."""
        import torch

        total, count = 0.0, 0
        for i in range(0, len(input_ids), self.batch_size):
            rows, row_labels = input_ids[i : i + self.batch_size], labels[i : i + self.batch_size]
            width = max(len(ids) for ids in rows)
            ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, tokens in enumerate(rows):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logits = logits.float().cpu().numpy()
            for row, (tokens, marks) in enumerate(zip(rows, row_labels, strict=True)):
                nll, n = masked_nll(logits[row, : len(tokens)], tokens, marks)
                total, count = total + nll, count + n
        return total, count


class OnnxGenaiGenerator:
    """An ONNX Runtime GenAI model folder (the int4 build)."""

    def __init__(
        self,
        folder: Path,
        task: Task,
        batch_size: int,
        threads: int = 0,
        adapter: Path | ActiveAdapter | None = None,
        loaded: tuple | None = None,
    ):
        from slmtune.models import load_tokenizer
        from slmtune.ortgenai import open_folder

        self.task, self.folder, self.batch_size = task, folder, batch_size
        self.model, self.tokenizer = loaded or open_folder(folder, threads)  # `loaded`: shared with others
        self.adapter = ActiveAdapter.load(self.model, adapter) if isinstance(adapter, Path) else adapter
        self.hf_tokenizer = load_tokenizer(folder)  # renders the chat template
        self.context_length = genai_context_length(folder)
        self.pad = genai_pad_token_id(folder)

    def _generator(self, max_length: int, sampling: Sampling):
        from slmtune.ortgenai import new_generator

        options: dict[str, Any] = {"max_length": max_length, "do_sample": False}
        if sampling.temperature > 0:
            sampled = {"do_sample": True, "temperature": sampling.temperature, "top_k": TOP_K}
            options |= {**sampled, "random_seed": sampling.seed}
        return new_generator(self.model, self.adapter, **options)

    def _tokens(self, prompt: str, sampling: Sampling) -> Iterator[int]:
        ids = np.asarray(self.tokenizer.encode(prompt), dtype=np.int32)
        room = answer_room(len(ids), sampling.max_new_tokens, self.context_length)
        generator = self._generator(room + len(ids), sampling)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        return [self.tokenizer.decode(np.asarray(list(self._tokens(p, sampling)), dtype=np.int32)) for p in prompts]

    def stream(self, prompt: str, sampling: Sampling) -> Iterator[str]:
        """The answer piece by piece (ONNX Runtime GenAI's TokenizerStream)."""
        decoder = self.tokenizer.create_stream()
        for token in self._tokens(prompt, sampling):
            piece = decoder.decode(token)
            if piece:
                yield piece

    def nll(self, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> tuple[float, int]:
        """Teacher-forced: right-padded rows in one prefill each batch, logits at every position."""
        from slmtune.ortgenai import prefill_logits

        total, count = 0.0, 0
        step = min(self.batch_size, GENAI_MAX_BATCH)
        for i in range(0, len(input_ids), step):
            rows, row_labels = input_ids[i : i + step], labels[i : i + step]
            rows = [list(ids) for ids in rows]
            logits = prefill_logits(self.model, self.folder, rows, self.pad, "perplexity", self.adapter)
            for row, (tokens, marks) in enumerate(zip(rows, row_labels, strict=True)):
                nll, n = masked_nll(logits[row, : len(tokens)], tokens, marks)
                total, count = total + nll, count + n
        return total, count


def load_generator(
    folder: Path | str,
    *,
    batch_size: int,
    adapter: Path | str | None = None,
    hw: HwConfig | None = None,
    runtime_adapter: Path | None = None,
) -> TextGenerator:
    """A generator for a model folder of a generative task: ONNX Runtime GenAI or PyTorch, as the folder holds.

    `runtime_adapter`: an ONNX Runtime adapter file made active on a LoRA base (its card says the task).
    """
    from slmtune.models import load_adapter, load_causal_lm, load_tokenizer
    from slmtune.scoring import check_model_kind, is_onnx_folder

    folder = Path(folder)
    if runtime_adapter is not None:
        from slmtune.runtime_adapters import adapter_task

        task = adapter_task(folder, runtime_adapter, "generation")
        return OnnxGenaiGenerator(folder, task, batch_size, hw.num_threads if hw else 0, runtime_adapter)
    task = check_model_kind(folder, "generation")
    if is_onnx_folder(folder):
        return OnnxGenaiGenerator(folder, task, batch_size, threads=hw.num_threads if hw else 0)
    tokenizer = load_tokenizer(folder)
    model = load_causal_lm(folder, hw)
    if adapter is not None:
        model = load_adapter(model, adapter, folder)
    return TorchGenerator(model, tokenizer, task, batch_size)
