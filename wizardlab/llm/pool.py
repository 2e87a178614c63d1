"""A pool of OpenAI-compatible endpoints behind one backend: spread calls, fail over, back off.

`--base-url` may be given several times; each value is `URL[,model=NAME][,weight=W]`
(a URL without a model uses `--model`). `Settings.base_url` keeps them as one
whitespace-separated string, so every job's command line passes the pool on unchanged.

`PoolBackend.chat` sends each call to the healthy endpoint with the fewest calls in flight
relative to its weight. A connection failure or a 5xx answer makes it try the next
endpoint at once (the call is not lost and not counted as a retry); an endpoint whose
connection fails, or that answers 5xx `burst` times in a row, is taken out for a back-off
period (1 s, doubling up to 60 s while it keeps failing; one success resets it). Rate
limits (429) and timeouts are left to `LLMClient`'s retries. When every endpoint is out,
the one due back first is tried anyway.

The request cache key uses the pool's identity (its sorted model names), not the endpoint
that answered, so a cached answer is found whichever replica gave it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wizardlab.errors import UserError
from wizardlab.llm.base import Completion, TransientError


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    weight: float = 1.0


def parse_endpoints(spec: str, default_model: str | None) -> list[Endpoint]:
    """`URL[,model=NAME][,weight=W]` entries separated by whitespace -> endpoints (UserError naming the entry)."""
    endpoints = []
    for entry in spec.split():
        url, *options = entry.split(",")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--base-url {entry!r}: the URL must start with http:// or https://")
        fields = {"model": default_model, "weight": "1"}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in ("model", "weight") or not value:
                raise UserError(f"--base-url {entry!r}: unknown option {option!r} (use model=NAME or weight=W)")
            fields[key] = value
        try:
            weight = float(fields["weight"])
        except ValueError:
            raise UserError(f"--base-url {entry!r}: weight must be a number, got {fields['weight']!r}") from None
        if weight <= 0:
            raise UserError(f"--base-url {entry!r}: weight must be positive, got {weight:g}")
        if not fields["model"]:
            raise UserError(f"--base-url {entry!r} needs a model: give --model or {url},model=NAME")
        endpoints.append(Endpoint(url.rstrip("/"), fields["model"], weight))
    return endpoints


class _Member:
    def __init__(self, endpoint: Endpoint, backend):
        self.endpoint, self.backend = endpoint, backend
        self.in_flight = self.calls = self.errors = self.failovers = 0
        self.latency_ms_total = 0.0
        self.fails_in_row = self.outages = 0
        self.down_until = 0.0

    def load(self) -> float:
        return (self.in_flight + 1) / self.endpoint.weight

    def as_dict(self, now: float) -> dict:
        e = self.endpoint
        return {"base_url": e.base_url, "model": e.model, "weight": e.weight, "calls": self.calls,
                "errors": self.errors, "in_flight": self.in_flight, "down": self.down_until > now,
                "mean_latency_ms": self.latency_ms_total / self.calls if self.calls else 0.0}


class PoolBackend:
    """Several OpenAI-compatible endpoints as one `Backend`."""

    few_shot = False
    max_concurrency = None
    in_process = False

    def __init__(self, endpoints: list[Endpoint], api_key: str | None = None, *, burst: int = 3,
                 backoff_s: float = 1.0, backoff_max_s: float = 60.0, clock=time.monotonic):
        from wizardlab.llm.openai_backend import OpenAIBackend

        if not endpoints:
            raise UserError("an endpoint pool needs at least one --base-url")
        self.members = [_Member(e, OpenAIBackend(e.base_url, e.model, api_key)) for e in endpoints]
        models = sorted({e.model for e in endpoints})
        self.model = ",".join(models)
        self.identity = "pool|" + "|".join(models)
        self.burst, self.backoff_s, self.backoff_max_s, self._clock = burst, backoff_s, backoff_max_s, clock

    def _pick(self, tried: set[int]) -> _Member | None:
        now = self._clock()
        candidates = [m for i, m in enumerate(self.members) if i not in tried]
        if not candidates:
            return None
        healthy = [m for m in candidates if m.down_until <= now]
        if healthy:
            return min(healthy, key=_Member.load)
        return min(candidates, key=lambda m: m.down_until)

    async def chat(self, messages, *, max_tokens, temperature, stop, timeout, top_p=None, seed=None) -> Completion:
        extra = {"top_p": top_p} if top_p is not None else {}
        if seed is not None:
            extra["seed"] = seed
        tried: set[int] = set()
        last_error: TransientError | None = None
        while True:
            member = self._pick(tried)
            if member is None:
                raise last_error
            tried.add(self.members.index(member))
            member.in_flight += 1
            start = self._clock()
            try:
                completion = await member.backend.chat(messages, max_tokens=max_tokens, temperature=temperature,
                                                       stop=stop, timeout=timeout, **extra)
            except TransientError as exc:
                member.errors += 1
                if not self._failed(member, str(exc)):
                    raise
                last_error = exc
                continue
            finally:
                member.in_flight -= 1
            member.calls += 1
            member.latency_ms_total += (self._clock() - start) * 1000
            member.fails_in_row = member.outages = 0
            return completion

    def _failed(self, member: _Member, message: str) -> bool:
        """Book a failure; True when it is the endpoint's fault (connection, 5xx): try another one."""
        connection = message.startswith("connection error")
        if not connection and not message[:1] == "5":
            return False
        member.fails_in_row += 1
        if connection or member.fails_in_row >= self.burst:
            member.down_until = self._clock() + min(self.backoff_max_s, self.backoff_s * 2 ** member.outages)
            member.outages += 1
            member.fails_in_row = 0
        return True

    def endpoint_stats(self) -> list[dict]:
        now = self._clock()
        return [m.as_dict(now) for m in self.members]

    async def aclose(self) -> None:
        for member in self.members:
            await member.backend.aclose()
