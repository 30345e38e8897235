"""Dynamic batching: phrases of requests that arrive together are scored in one model call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Pending:
    phrases: list[str]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MicroBatcher:
    """Collects requests for up to `max_wait_s` (or `max_batch` phrases) and computes them together.

    `compute` takes the batch's requests (each a list of phrases) and answers each with its results
    or with the exception that refuses it alone.

    While one batch is on the model, the next one gathers, so under load batches fill by themselves
    and the wait only costs a lone request its few milliseconds. A request is never split.
    """

    def __init__(
        self,
        compute: Callable[[list[list[str]]], Awaitable[list[list[Any] | Exception]]],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] = lambda phrases, seconds: None,
    ):
        self.compute, self.max_batch, self.max_wait_s, self.on_batch = compute, max_batch, max_wait_s, on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="slmtune-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, phrases: list[str]) -> list[Any]:
        """The results for `phrases`, in order, once their batch is computed."""
        pending = _Pending(phrases)
        await self._queue.put(pending)
        return await pending.future

    async def _serve(self) -> None:
        carry: _Pending | None = None
        while True:
            batch = [carry or await self._queue.get()]
            carry = None
            size = len(batch[0].phrases)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(item.phrases) > self.max_batch:
                    carry = item  # starts the next batch
                    break
                batch.append(item)
                size += len(item.phrases)
            await self._compute(batch)

    async def _compute(self, batch: list[_Pending]) -> None:
        live = [item for item in batch if not item.future.done()]  # a client that left is not computed for
        if not live:
            return
        started = time.perf_counter()
        try:
            answers = await self.compute([item.phrases for item in live])
        except Exception as err:  # the whole batch failed: every request hears why
            answers = [err] * len(live)
        scored = sum(len(item.phrases) for item, a in zip(live, answers, strict=True) if not isinstance(a, Exception))
        if scored:
            self.on_batch(scored, time.perf_counter() - started)
        for item, answer in zip(live, answers, strict=True):
            if item.future.done():
                continue
            if isinstance(answer, Exception):
                item.future.set_exception(answer)
            else:
                item.future.set_result(answer)
