"""The served model: loaded once, its limits checked before any model call, computed on one thread.

A classification model scores phrases (requests that arrive together are batched, see batching.py);
a generation model writes answers, one at a time, streamed piece by piece. Every model call runs on
the engine's single worker thread, so the event loop never blocks and the model is never entered
by two threads at once. A LoRA base with runtime adapters serves one *variant* per adapter besides
its own task, all on the one model in memory; a request's `model` field picks the variant.
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


class Variant:
    """One task served: the folder's own, or the folder with one runtime adapter active."""

    def __init__(self, name: str, task: Task, classifier=None, generator=None):
        self.name, self.task, self.classifier, self.generator = name, task, classifier, generator
        self.context_length = (generator or classifier).context_length

    @property
    def kind(self) -> str:
        return self.task.kind

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

    def completion_tokens(self, text: str) -> int:
        return len(self.generator.hf_tokenizer(text, add_special_tokens=False)["input_ids"])


class ServedModel:
    """A model folder (int4 ONNX or merged PyTorch) behind the API: its variants, their limits and one thread."""

    def __init__(self, folder: Path, batch_size: int, adapters: dict[str, Path] | None = None, name: str = ""):
        from slmtune.scoring import is_onnx_folder

        self.folder, self.name = folder, name or folder.name
        self.runtime = "onnxruntime-genai" if is_onnx_folder(folder) else "pytorch"
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slmtune-model")
        self.variants = load_variants(folder, self.name, batch_size, adapters or {})

    @property
    def default(self) -> Variant:
        return next(iter(self.variants.values()))

    def variant(self, requested: str | None) -> Variant:
        """The variant a request's `model` field names (none: the folder's own)."""
        if requested is None:
            return self.default
        if requested not in self.variants:
            raise RequestRejected(
                f"model '{requested}' is not served here; this server serves {', '.join(map(repr, self.variants))}",
                404,
                "model_not_found",
            )
        return self.variants[requested]

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    async def run(self, work: Callable, *args):
        """`work(*args)` on the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    async def stream(self, variant: Variant, prompt: str, sampling, cancelled: threading.Event) -> AsyncIterator[str]:
        """The answer's pieces as the model's thread decodes them; stops early once `cancelled` is set."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        done = object()

        def decode() -> None:
            try:
                for piece in variant.generator.stream(prompt, sampling):
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


def conversation(messages: list[dict]) -> list[tuple[str, str]]:
    """(role, content) turns of OpenAI-style messages; the roles this model can be given."""
    turns = [(m["role"], m["content"]) for m in messages]
    if not any(role == "user" for role, _ in turns):
        raise RequestRejected("messages: at least one message with role 'user' is needed")
    return turns


def load_served_model(
    folder: Path, batch_size: int, adapters: dict[str, Path] | None = None, name: str = ""
) -> ServedModel:
    """The model folder, loaded once; a clear ModelError when it is no slmtune model folder."""
    if not Path(folder).is_dir():
        from slmtune.models import RESTORE_HINT

        raise ModelError(f"--model-path {folder}: model folder not found; {RESTORE_HINT}")
    return ServedModel(Path(folder), batch_size, adapters, name)


def load_variants(folder: Path, name: str, batch_size: int, adapters: dict[str, Path]) -> dict[str, Variant]:
    """The folder's own task under `name`, then one variant per runtime adapter (one model in memory)."""
    from slmtune.scoring import check_model_kind, is_onnx_folder

    own = check_model_kind(folder, Task.load(folder).kind)
    if not adapters:
        return {name: _variant(name, own, lambda kind: _load(folder, kind, batch_size))}
    if not is_onnx_folder(folder):
        raise ModelError(f"--adapter needs a LoRA base (`slmtune lora-base`); {folder} is a PyTorch folder")
    from slmtune.ortgenai import open_folder
    from slmtune.runtime_adapters import ActiveAdapter, adapter_task

    loaded = open_folder(folder)
    variants = {name: _variant(name, own, lambda kind: _onnx(folder, own, kind, batch_size, loaded, None))}
    first: ActiveAdapter | None = None
    for adapter_name, path in adapters.items():
        if adapter_name in variants:
            raise ModelError(f"--adapter {adapter_name}={path}: the name {adapter_name!r} is taken; name it otherwise")
        task = adapter_task(folder, path)
        if first is None:
            active = first = ActiveAdapter.load(loaded[0], path, adapter_name)
        else:
            active = first.load_beside(path, adapter_name)
        variants[adapter_name] = _variant(
            adapter_name, task, lambda kind, t=task, a=active: _onnx(folder, t, kind, batch_size, loaded, a)
        )
    return variants


def _variant(name: str, task: Task, make) -> Variant:
    compute = make(task.kind)
    return Variant(name, task, generator=compute) if task.generative else Variant(name, task, classifier=compute)


def _load(folder: Path, kind: str, batch_size: int):
    if kind == "generation":
        from slmtune.generation import load_generator

        return load_generator(folder, batch_size=batch_size)
    from slmtune.scoring import load_classifier

    return load_classifier(folder, batch_size=batch_size, max_new_tokens=1)


def _onnx(folder: Path, task: Task, kind: str, batch_size: int, loaded, adapter):
    if kind == "generation":
        from slmtune.generation import OnnxGenaiGenerator

        return OnnxGenaiGenerator(folder, task, batch_size, adapter=adapter, loaded=loaded)
    from slmtune.scoring import OnnxGenaiClassifier

    return OnnxGenaiClassifier(folder, task, 1, batch_size, adapter=adapter, loaded=loaded)
