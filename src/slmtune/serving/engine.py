"""The served model: loaded once, its limits checked before any model call, computed on one thread.

A classification model scores phrases (requests that arrive together are batched, see batching.py);
a generation model writes answers, one at a time, streamed piece by piece. Every model call runs on
the engine's single worker thread, so the event loop never blocks and the model is never entered
by two threads at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slmtune.errors import ModelError
from slmtune.prompts import Task

ROLES = ("system", "user", "assistant")


class RequestRejected(Exception):
    """A request the model cannot take (too long, wrong kind): the API answers it with `status`."""

    def __init__(self, message: str, status: int = 422, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Answer:
    """A whole chat answer and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class ServedModel:
    """A model folder (int4 ONNX or merged PyTorch) behind the API: its task card, limits and compute."""

    def __init__(self, folder: Path, batch_size: int, threads: int = 0):
        from slmtune.scoring import check_model_kind, is_onnx_folder

        self.folder = folder
        self.task: Task = check_model_kind(folder, Task.load(folder).kind)
        self.runtime = "onnxruntime-genai" if is_onnx_folder(folder) else "pytorch"
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slmtune-model")
        if self.task.generative:
            from slmtune.generation import load_generator

            self.generator = load_generator(folder, batch_size=batch_size)
            self.context_length = self.generator.context_length
        else:
            from slmtune.scoring import load_classifier

            self.classifier = load_classifier(folder, batch_size=batch_size, max_new_tokens=1)
            self.context_length = self.classifier.context_length

    @property
    def kind(self) -> str:
        return self.task.kind

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    async def run(self, work: Callable, *args):
        """`work(*args)` on the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    # classification

    def classify_requests(self, requests: list[list[str]]) -> list[list[dict] | Exception]:
        """Each request's phrases scored together (call on the model's thread): per phrase its label
        probabilities and prompt tokens; a request with a phrase too long for the context is refused
        alone, before any model call."""
        from slmtune.scoring import label_probabilities

        answers: list[list[dict] | Exception] = []
        accepted: list[str] = []
        for phrases in requests:
            lengths = self.classifier.prompt_lengths(self.classifier.prompts(phrases))
            try:
                self._check_lengths(lengths, len(phrases))
            except RequestRejected as err:
                answers.append(err)
                continue
            answers.append([{"prompt_tokens": n} for n in lengths])
            accepted += phrases
        probabilities = iter(label_probabilities(self.classifier, accepted) if accepted else [])
        for answer in answers:
            if not isinstance(answer, Exception):
                for row in answer:
                    row["probabilities"] = next(probabilities)
        return answers

    def _check_lengths(self, prompt_lengths: list[int], count: int) -> None:
        from slmtune.scoring import overlong_prompts

        for index, tokens in overlong_prompts(self.classifier, prompt_lengths)[:1]:
            where = f"input[{index}]" if count > 1 else "input"
            raise RequestRejected(
                f"{where} is {tokens} tokens with the prompt and the longest label; the model's context holds "
                f"{self.context_length} tokens: shorten it",
                code="context_length_exceeded",
            )

    def label_tokens(self, label: str) -> int:
        return len(self.classifier.label_token_ids[self.task.labels.index(label)])

    # generation

    def prompt(self, messages: list[tuple[str, str]]) -> str:
        """The prompt for a conversation, rendered as the model was trained; RequestRejected if it cannot be."""
        from slmtune.generation import chat_prompt
        from slmtune.generation_data import template_columns

        template = self.task.prompt_template
        if template is None:
            return chat_prompt(self.generator, messages)
        columns = template_columns(template)
        users = [content for role, content in messages if role == "user"]
        if len(columns) != 1:
            raise RequestRejected(
                f"this model's prompt template {template!r} reads {len(columns)} columns; it cannot be chatted with"
            )
        if len(users) != 1:
            raise RequestRejected(
                f"this model was trained on the text template {template!r}; send one user message, which fills "
                f"its column {columns[0]!r}"
            )
        return template.format(**{columns[0]: users[0]})

    def chat_prompt(self, messages: list[tuple[str, str]]) -> tuple[str, int]:
        """The conversation's prompt and its token count (call on the model's thread); refused if it
        leaves no room for an answer in the model's context."""
        prompt = self.prompt(messages)
        prompt_tokens = len(self.generator.hf_tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if prompt_tokens >= self.context_length:
            raise RequestRejected(
                f"the conversation is {prompt_tokens} tokens; the model's context holds {self.context_length} "
                "(with room for at least one answer token): shorten it",
                code="context_length_exceeded",
            )
        return prompt, prompt_tokens

    async def stream(self, prompt: str, sampling, cancelled: threading.Event) -> AsyncIterator[str]:
        """The answer's pieces as the model's thread decodes them; stops early once `cancelled` is set."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        done = object()

        def decode() -> None:
            try:
                for piece in self.generator.stream(prompt, sampling):
                    if cancelled.is_set():
                        break
                    loop.call_soon_threadsafe(pieces.put_nowait, piece)
            except BaseException as err:  # handed to the awaiting request
                loop.call_soon_threadsafe(pieces.put_nowait, err)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, done)

        job = loop.run_in_executor(self._worker, decode)
        try:
            while (item := await pieces.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(job)

    def completion_tokens(self, text: str) -> int:
        return len(self.generator.hf_tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation(messages: list[dict]) -> list[tuple[str, str]]:
    """(role, content) turns of OpenAI-style messages; the roles this model can be given."""
    turns = [(m["role"], m["content"]) for m in messages]
    if not any(role == "user" for role, _ in turns):
        raise RequestRejected("messages: at least one message with role 'user' is needed")
    return turns


def load_served_model(folder: Path, batch_size: int, threads: int = 0) -> ServedModel:
    """The model folder, loaded once; a clear ModelError when it is no slmtune model folder."""
    if not Path(folder).is_dir():
        from slmtune.models import RESTORE_HINT

        raise ModelError(f"--model-path {folder}: model folder not found; {RESTORE_HINT}")
    return ServedModel(Path(folder), batch_size, threads)
