"""The HTTP API (FastAPI): health, models, classify, OpenAI-compatible chat completions, metrics, the page."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from slmtune.config import ServeConfig
from slmtune.serving.batching import MicroBatcher
from slmtune.serving.engine import Answer, RequestRejected, ServedModel, conversation
from slmtune.serving.guards import AccessLog, ApiKeyGuard, BodyGuard
from slmtune.serving.metrics import ServerMetrics
from slmtune.serving.responses import error_payload


class Strict(BaseModel):
    """Unknown fields and wrong types are refused, never coerced or ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ClassifyRequest(Strict):
    input: str | list[str]
    scores: bool = False
    model: str | None = None


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(Strict):
    include_usage: bool = False


class ChatRequest(Strict):
    messages: Annotated[list[Message], Field(min_length=1)]
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


def create_app(model: ServedModel, settings: ServeConfig, api_key: str | None = None):
    """The ASGI app over a loaded model, wrapped in its guards (log, key, body limits)."""
    metrics = ServerMetrics()
    batchers = {  # one per classifying variant: an adapter is active per model call
        variant.name: MicroBatcher(
            lambda requests, v=variant: model.run(v.classify_requests, requests),
            settings.max_batch_size,
            settings.batch_wait_ms / 1000,
            metrics.batch,
        )
        for variant in model.variants.values()
        if not variant.task.generative
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    app = FastAPI(title="slmtune", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(model, variant) for variant in model.variants.values()]}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})

    @app.post("/v1/classify")
    async def classify(request: ClassifyRequest):
        variant = model.variant(request.model)
        if variant.task.generative:
            raise RequestRejected(f"model '{variant.name}' writes text (a generation task): use /v1/chat/completions")
        phrases = checked_phrases(request.input, settings.max_phrases)
        rows = await batchers[variant.name].submit(phrases)
        data = []
        for index, row in enumerate(rows):
            probabilities = row["probabilities"]
            item = {"index": index, "label": max(probabilities, key=probabilities.get)}
            if request.scores:
                item["scores"] = {label: round(p, 6) for label, p in probabilities.items()}
            data.append(item)
        return {"object": "list", "model": variant.name, "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        variant = model.variant(request.model)
        if request.n not in (None, 1):
            raise RequestRejected(f"n is {request.n}; this server writes one choice per request (n=1)")
        turns = conversation([m.model_dump() for m in request.messages])
        sampling = sampling_of(request, settings.max_tokens, variant.context_length)  # checked for either kind
        usage = request.stream_options is not None and request.stream_options.include_usage
        completion = ChatCompletion(variant.name, usage)
        if not variant.task.generative:
            answer = await classify_chat(variant, batchers[variant.name], turns)
            metrics.prompt_tokens.inc(answer.prompt_tokens)
            metrics.completion_tokens.inc(answer.completion_tokens)
            if request.stream:
                return completion.stream_whole(answer)
            return completion.whole(answer)
        prompt, prompt_tokens = await model.run(variant.chat_prompt, turns)
        metrics.prompt_tokens.inc(prompt_tokens)
        room = min(sampling.max_new_tokens, variant.context_length - prompt_tokens)
        if request.stream:
            return completion.stream(model, variant, prompt, sampling, prompt_tokens, room, metrics)
        cancelled = threading.Event()
        text = "".join([piece async for piece in model.stream(variant, prompt, sampling, cancelled)]).strip()
        tokens = await model.run(variant.completion_tokens, text)
        metrics.completion_tokens.inc(tokens)
        return completion.whole(Answer(text, prompt_tokens, tokens, "length" if tokens >= room else "stop"))

    wrapped = BodyGuard(app, settings.max_body_bytes, settings.body_timeout_s)
    return AccessLog(ApiKeyGuard(wrapped, api_key), metrics)


def model_card(model: ServedModel, variant) -> dict:
    """A served variant in OpenAI's model-object shape, with what a client needs to know of it."""
    card = {
        "id": variant.name,
        "object": "model",
        "created": int(model.folder.stat().st_mtime),
        "owned_by": "slmtune",
        "kind": variant.kind,
        "labels": variant.task.labels,
        "max_model_len": variant.context_length,
        "runtime": model.runtime,
    }
    if variant is not model.default:
        card |= {"root": model.name, "parent": model.name}  # a runtime adapter on the served base, as vLLM says
    return card


def checked_phrases(given: str | list[str], limit: int) -> list[str]:
    """The phrases of a classify request: one or more non-empty strings, at most `limit`."""
    phrases = [given] if isinstance(given, str) else given
    if not phrases:
        raise RequestRejected("input is an empty list; give one phrase or a list of phrases")
    if len(phrases) > limit:
        raise RequestRejected(
            f"input has {len(phrases)} phrases; serve.max_phrases={limit} per request: send them in several requests",
            code="too_many_phrases",
        )
    for index, phrase in enumerate(phrases):
        if not phrase.strip():
            where = f"input[{index}]" if isinstance(given, list) else "input"
            raise RequestRejected(f"{where} is empty; give some text to classify")
    return phrases


async def classify_chat(variant, batcher: MicroBatcher, turns: list[tuple[str, str]]) -> Answer:
    """A classifier's chat answer: its label for the last user message (only a label can come out)."""
    phrase = next(content for role, content in reversed(turns) if role == "user")
    if not phrase.strip():
        raise RequestRejected("the last user message is empty; give some text to classify")
    [row] = await batcher.submit([phrase])
    label = max(row["probabilities"], key=row["probabilities"].get)
    return Answer(label, row["prompt_tokens"], variant.label_tokens(label), "stop")


def sampling_of(request: ChatRequest, cap: int, context: int):
    """The request's Sampling: max_tokens within the server's cap, temperature from 0 (default, greedy) to 2."""
    from slmtune.generation import Sampling

    if request.max_tokens is not None and request.max_completion_tokens is not None:
        raise RequestRejected("give max_tokens or max_completion_tokens, not both")
    asked = request.max_tokens if request.max_tokens is not None else request.max_completion_tokens
    key = "max_tokens" if request.max_tokens is not None else "max_completion_tokens"
    if asked is not None and not 1 <= asked <= cap:
        raise RequestRejected(f"{key} is {asked}; it must be from 1 to serve.max_tokens={cap}", code="max_tokens")
    temperature = 0.0 if request.temperature is None else request.temperature
    if not 0.0 <= temperature <= 2.0:
        raise RequestRejected(f"temperature is {temperature}; it must be from 0 (greedy) to 2", code="temperature")
    return Sampling(asked if asked is not None else min(cap, context), temperature, request.seed or 0)


class ChatCompletion:
    """OpenAI's chat.completion objects, whole or as server-sent chunks."""

    def __init__(self, name: str, include_usage: bool):
        self.name, self.include_usage = name, include_usage
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.name}

    @staticmethod
    def _usage(answer: Answer) -> dict:
        total = answer.prompt_tokens + answer.completion_tokens
        return {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": total,
        }

    def whole(self, answer: Answer) -> dict:
        message = {"role": "assistant", "content": answer.text}
        choice = {"index": 0, "message": message, "finish_reason": answer.finish_reason, "logprobs": None}
        return {**self._head("chat.completion"), "choices": [choice], "usage": self._usage(answer)}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return sse({**self._head("chat.completion.chunk"), "choices": [choice]})

    def _closing(self, answer: Answer) -> list[str]:
        events = [self._chunk({}, answer.finish_reason)]
        if self.include_usage:
            events.append(sse({**self._head("chat.completion.chunk"), "choices": [], "usage": self._usage(answer)}))
        return [*events, "data: [DONE]\n\n"]

    def stream_whole(self, answer: Answer) -> StreamingResponse:
        events = [
            self._chunk({"role": "assistant", "content": ""}),
            self._chunk({"content": answer.text}),
            *self._closing(answer),
        ]
        return event_stream(iter_async(events))

    def stream(self, model: ServedModel, variant, prompt: str, sampling, prompt_tokens: int, room: int, metrics):
        async def events() -> AsyncIterator[str]:
            yield self._chunk({"role": "assistant", "content": ""})
            pieces: list[str] = []
            try:
                async for piece in model.stream(variant, prompt, sampling, threading.Event()):
                    pieces.append(piece)
                    yield self._chunk({"content": piece})
            except Exception as err:  # the status is sent already: say it in the stream, as OpenAI does
                yield sse(error_payload(500, f"generation failed: {type(err).__name__}", "server_error"))
                yield "data: [DONE]\n\n"
                return
            tokens = await model.run(variant.completion_tokens, "".join(pieces))
            metrics.completion_tokens.inc(tokens)
            answer = Answer("".join(pieces), prompt_tokens, tokens, "length" if tokens >= room else "stop")
            for event in self._closing(answer):
                yield event

        return event_stream(events())


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def iter_async(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def page_html() -> str:
    return resources.files("slmtune.serving").joinpath("static/index.html").read_text(encoding="utf-8")


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal as `{"error": {"message", "type", "code"}}` with its 4xx, never a traceback."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, err: RequestRejected):
        return JSONResponse(error_payload(err.status, str(err), err.code), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0]
        if first.get("type") == "json_invalid":
            where = first.get("ctx", {}).get("error", "")
            return JSONResponse(error_payload(400, f"the body is not valid JSON ({where})", "invalid_json"), 400)
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if len(err.errors()) > 1:
            message += f" (and {len(err.errors()) - 1} more problems)"
        return JSONResponse(error_payload(422, message, first.get("type", "invalid")), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        messages = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        message = messages.get(err.status_code, str(err.detail))
        return JSONResponse(
            error_payload(err.status_code, message, "http_error"), status_code=err.status_code, headers=err.headers
        )
