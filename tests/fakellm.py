"""A fake OpenAI-compatible chat server over real HTTP, for tests and benchmarks.

It scripts answers (a `responder(body) -> str | Fault`) and injects faults: an HTTP
status (429 with Retry-After, 500), a hang longer than the client's timeout, a
garbage body, or an answer cut off at max_tokens (`finish_reason="length"`). Setting
`fake.down = True` makes every request fail with 503 (an outage) until set back.
Runs uvicorn in a thread on 127.0.0.1, port 0 by default.

    with FakeLLM(lambda body: "hello") as fake:
        client = OpenAI(base_url=fake.base_url, api_key="x")

`python -m tests.fakellm --port 8001 --latency 0.1:0.5` serves the scripted
Evol-Instruct answers of `evol_responder` for manual runs and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP status
    retry_after: float | None = None  # Retry-After header (seconds)
    hang: float | None = None  # sleep this long before answering normally
    garbage: bool = False  # 200 with a body that is not JSON
    text: str = "scripted"  # what to answer after a hang, or with finish_reason
    finish_reason: str | None = None  # answer `text` normally with this finish_reason (e.g. "length")


Responder = Callable[[dict], "str | Fault"]


def _last_user(body: dict) -> str:
    for msg in reversed(body.get("messages", [])):
        if msg.get("role") == "user":
            return msg.get("content") or ""
    return ""


def evol_responder(body: dict) -> str:
    """Plausible scripted answers for the three Evol-Instruct calls, keyed on the task's wording."""
    system = " ".join(m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "system")
    prompt = _last_user(body)
    if "Equal" in system or "Equal" in prompt[-400:]:
        return "Not Equal"
    if "#Given Prompt#" in prompt or "rewrite" in system.lower() or "create" in system.lower():
        given = prompt.split("#Given Prompt#:", 1)[-1].split("#Rewritten Prompt#", 1)[0].split("#Created Prompt#", 1)[0]
        base = " ".join(given.split())[:300]
        return f"{base} Explain each step of your reasoning and give one concrete example for every point."
    return ("Here is a careful answer. First, consider the main requirement of the task and the constraints "
            "it states. Second, work through the details step by step, checking each intermediate result. "
            "Finally, summarise the outcome clearly so that the reader can apply it directly.")


class FakeLLM:
    def __init__(self, responder: Responder | None = None, *, latency: Callable[[], float] | None = None,
                 host: str = "127.0.0.1", port: int = 0, record: bool = True):
        self.responder = responder or evol_responder
        self.latency = latency
        self.host = host
        self.port = port
        self.record = record
        self.requests: list[dict] = []
        self.count = 0
        self.down = False  # an outage: every request answers 503
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
        with self._lock:
            self.count += 1
            if self.record:
                self.requests.append(body)
        if self.latency is not None:
            await asyncio.sleep(self.latency())
        if self.down:
            return JSONResponse({"error": {"message": "injected outage", "type": "fault"}}, status_code=503)
        answer = self.responder(body)
        finish_reason = "stop"
        if isinstance(answer, Fault):
            if answer.finish_reason:
                answer, finish_reason = answer.text, answer.finish_reason
            elif answer.hang:
                await asyncio.sleep(answer.hang)
                answer = answer.text
            elif answer.garbage:
                return Response("<html>502 Bad Gateway{{{", status_code=200, media_type="application/json")
            elif answer.status:
                headers = {"retry-after": str(answer.retry_after)} if answer.retry_after is not None else {}
                return JSONResponse({"error": {"message": f"injected {answer.status}", "type": "fault"}},
                                    status_code=answer.status, headers=headers)
        prompt_tokens = sum(len((m.get("content") or "").split()) for m in body.get("messages", []))
        return JSONResponse({
            "id": f"chatcmpl-{self.count}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()),
                      "total_tokens": prompt_tokens + len(answer.split())},
        })

    async def _embeddings(self, request: Request) -> Response:
        """Deterministic 8-dimensional vectors from the text's bytes (same text, same vector)."""
        body = json.loads(await request.body())
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self._lock:
            self.count += 1
            if self.record:
                self.requests.append(body)
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(sum(t.encode()[k::8]) % 97 + 1) for k in range(8)]} for i, t in enumerate(texts)]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model", "fake")})

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                 Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                                 Route("/v1/models", self._models)])

    def start(self) -> "FakeLLM":
        config = uvicorn.Config(self.app(), host=self.host, port=self.port, log_level="error",
                                access_log=False, timeout_keep_alive=30, backlog=2048,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="fakellm")
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def faulty(responder: Responder, *, p429: float = 0.0, p500: float = 0.0, phang: float = 0.0,
           pgarbage: float = 0.0, hang_s: float = 30.0, seed: int = 0) -> Responder:
    """Wrap a responder so a seeded share of requests fail in the given ways."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def wrapped(body: dict):
        with lock:
            x = rng.random()
        if x < p429:
            return Fault(status=429, retry_after=0.05)
        x -= p429
        if x < p500:
            return Fault(status=500)
        x -= p500
        if x < phang:
            return Fault(hang=hang_s, text=responder(body))
        x -= phang
        if x < pgarbage:
            return Fault(garbage=True)
        return responder(body)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", default="0", help="seconds, or LO:HI for uniform latency")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of 429/500 answers")
    args = parser.parse_args()
    lo, _, hi = args.latency.partition(":")
    lo, hi = float(lo), float(hi or lo)
    rng = random.Random(0)
    responder = faulty(evol_responder, p429=args.fault_rate / 2, p500=args.fault_rate / 2)
    fake = FakeLLM(responder, latency=(lambda: rng.uniform(lo, hi)) if hi > 0 else None, port=args.port,
                   record=False)
    fake.start()
    print(f"fake OpenAI-compatible server at {fake.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
