"""`LLMClient`: concurrency limit, retries with backoff, request cache and accounting.

Wraps any `Backend`. Every call is keyed by a hash of the backend identity, the model,
the messages, the sampling parameters and an optional salt (evolution salts with the
node and step, so two nodes asking the same thing each get their own answer, while a
resumed run finds its answers again). A cached call costs nothing and is not counted
as paid. Answers are written to the store's `llm_calls` table (through a `BatchWriter`
when one is given, so the event loop never waits on a commit).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import dataclass, field

from wizardlab.llm.base import Backend, LLMError, PermanentError, TransientError


@dataclass
class Result:
    text: str
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    attempts: int
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """The answer hit max_tokens and is cut off."""
        return self.finish_reason == "length"


@dataclass
class Accounting:
    calls: int = 0  # paid calls that succeeded
    cache_hits: int = 0
    failures: int = 0  # calls that failed for good
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0
    errors: dict = field(default_factory=dict)  # error class -> count

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["mean_latency_ms"] = self.latency_ms_total / self.calls if self.calls else 0.0
        return d


def request_key(identity: str, messages: list[dict], max_tokens: int, temperature: float,
                stop: list[str] | None, salt: str | None, top_p: float | None = None) -> str:
    """Without top_p the key is the one earlier versions computed, so their caches still hit."""
    parts = [identity, messages, max_tokens, temperature, stop or [], salt or ""]
    payload = json.dumps(parts + ([top_p] if top_p is not None else []), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLMClient:
    def __init__(self, backend: Backend, *, store=None, writer=None, run_id: int | None = None,
                 concurrency: int = 16, timeout: float = 120.0, max_retries: int = 6,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, rng: random.Random | None = None):
        self.backend = backend
        self.store = store
        self.writer = writer
        self.run_id = run_id
        cap = backend.max_concurrency
        self.concurrency = min(concurrency, cap) if cap else concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._sem: asyncio.Semaphore | None = None
        self.stats = Accounting()

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created lazily, inside the running loop
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._sem

    async def complete(self, messages: list[dict], *, purpose: str = "", max_tokens: int = 512,
                       temperature: float = 0.7, top_p: float | None = None, stop: list[str] | None = None,
                       salt: str | None = None) -> Result:
        key = request_key(self.backend.identity, messages, max_tokens, temperature, stop, salt, top_p)
        if self.store is not None:
            hit = self.store.cache_get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return Result(hit["completion"], True, hit["prompt_tokens"], hit["completion_tokens"],
                              hit["latency_ms"], 0, hit.get("finish_reason"))
        async with self.semaphore:
            completion, latency_ms, attempts = await self._call_with_retries(messages, max_tokens, temperature, stop,
                                                                             top_p, int(key[:15], 16))
        self.stats.calls += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        self.stats.latency_ms_total += latency_ms
        if self.store is not None:
            row = {"key": key, "run_id": self.run_id, "backend": self.backend.identity, "model": self.backend.model,
                   "purpose": purpose,
                   "request": json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                                          "top_p": top_p, "stop": stop, "salt": salt}, ensure_ascii=False),
                   "finish_reason": completion.finish_reason,
                   "completion": completion.text, "prompt_tokens": completion.prompt_tokens,
                   "completion_tokens": completion.completion_tokens, "latency_ms": latency_ms, "attempts": attempts}
            if self.writer is not None:
                self.writer.submit(lambda conn, row=row: self.store.cache_put(conn, row))
            else:
                with self.store.tx() as conn:
                    self.store.cache_put(conn, row)
        return Result(completion.text, False, completion.prompt_tokens, completion.completion_tokens,
                      latency_ms, attempts, completion.finish_reason)

    async def _call_with_retries(self, messages, max_tokens, temperature, stop, top_p=None, seed=None):
        extra = {"top_p": top_p} if top_p is not None else {}
        if seed is not None:  # from the request key: a retry or a resumed run asks with the same seed
            extra["seed"] = seed
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                completion = await asyncio.wait_for(
                    self.backend.chat(messages, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                      timeout=self.timeout, **extra),
                    timeout=self.timeout + 5)
                return completion, (time.perf_counter() - start) * 1000, attempt
            except (TransientError, asyncio.TimeoutError) as exc:
                name = "timeout" if isinstance(exc, asyncio.TimeoutError) else str(exc).split(":")[0]
                self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                if attempt > self.max_retries:
                    self.stats.failures += 1
                    raise LLMError(f"gave up after {attempt} attempts: {exc or 'timeout'}") from exc
                self.stats.retries += 1
                await asyncio.sleep(self._delay(attempt, getattr(exc, "retry_after", None)))
            except PermanentError as exc:
                self.stats.failures += 1
                self.stats.errors["permanent"] = self.stats.errors.get("permanent", 0) + 1
                raise LLMError(str(exc)) from exc

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        backoff = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = self._rng.uniform(0, backoff)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max * 4))
        return delay

    def stats_dict(self) -> dict:
        """The accounting, plus per-endpoint calls, errors and latency when the backend is a pool."""
        d = self.stats.as_dict()
        endpoint_stats = getattr(self.backend, "endpoint_stats", None)
        if endpoint_stats is not None:
            d["endpoints"] = endpoint_stats()
        load_s = getattr(self.backend, "load_s", None)
        if load_s is not None:  # an in-process model: seconds its loading held up the first calls
            d["model_load_s"] = round(load_s, 2)
        hello = getattr(self.backend, "hello", None)
        if hello:  # a local model in a model server: which one, and whether this process found it loaded
            d["model_server"] = {"pid": hello.get("pid"), "was_loaded": bool(hello.get("loaded"))}
        return d

    async def aclose(self) -> None:
        await self.backend.aclose()
