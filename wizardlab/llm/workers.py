"""The one async worker pool behind every batch of LLM calls (evolution, difficulty, generation, judging).

`pump(items, handle, concurrency=N, stop=...)` runs `handle(item)` for each item with a
fixed pool of N workers fed from a bounded queue, so `items` may be a generator streaming
from the store and memory stays flat. One stop behaviour for all: when `stop()` turns
true the feeding ends at once and no worker starts another item; items in hand get `grace_s` seconds to land their answers
(a paid answer is worth keeping), then they are cancelled and stay to do for a resume.
A handler that raises stops the pool and its error is re-raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

_END = object()


async def pump(items: Iterable, handle: Callable[[object], Awaitable[None]], *, concurrency: int,
               stop: Callable[[], bool] = lambda: False, grace_s: float = 10.0,
               on_done: Callable[[], None] | None = None, poll_s: float = 0.2) -> bool:
    """Run `handle` over `items` with `concurrency` workers; returns True when stopped early."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, concurrency) * 2)

    async def worker():
        while True:
            item = await queue.get()
            if item is _END:
                return
            if stop():  # asked to stop while this item waited in the queue: leave it for a resume
                continue
            await handle(item)
            if on_done is not None:
                on_done()

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        stopped = not await _feed(queue, items, workers, stop, poll_s)
        if not stopped:
            stopped = not await _feed(queue, [_END] * len(workers), workers, stop, poll_s)
        if stopped:  # drop what was not started; idle workers end at once, busy ones after their item
            _drain(queue)
            for _ in workers:
                queue.put_nowait(_END)
        return await _wait(workers, stop, stopped, grace_s, poll_s)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _feed(queue: asyncio.Queue, items: Iterable, workers: list, stop, poll_s: float) -> bool:
    """Put every item; False as soon as a stop is requested. A dead worker's error is raised."""
    for item in items:
        while True:
            if stop():
                return False
            _raise_failed(workers)
            try:
                await asyncio.wait_for(queue.put(item), timeout=poll_s)
                break
            except asyncio.TimeoutError:
                continue
    return True


async def _wait(workers: list, stop, stopped: bool, grace_s: float, poll_s: float) -> bool:
    pending = set(workers)
    while pending:
        if stopped or stop():
            await asyncio.wait(pending, timeout=grace_s)
            _raise_failed(workers)
            return True
        _, pending = await asyncio.wait(pending, timeout=poll_s)
        _raise_failed(workers)
    return stopped


def _drain(queue: asyncio.Queue) -> None:
    while not queue.empty():
        queue.get_nowait()


def _raise_failed(workers: list) -> None:
    for w in workers:
        if w.done() and not w.cancelled() and w.exception() is not None:
            raise w.exception()
