"""LLMClient over the OpenAI backend against the fake server: retries, faults, cache, accounting."""

import asyncio
import time

import pytest

from tests.fakellm import Fault, FakeLLM
from wizardlab.llm import LLMClient, LLMError
from wizardlab.llm.openai_backend import OpenAIBackend

MSG = [{"role": "user", "content": "hello"}]


def scripted(*answers):
    """A responder that plays `answers` in order, then repeats the last."""
    seq = list(answers)

    def responder(body):
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return responder


def client_for(fake, store=None, **kw):
    kw.setdefault("backoff_base", 0.01)
    return LLMClient(OpenAIBackend(fake.base_url, "fake-model"), store=store, **kw)


def run(coro):
    return asyncio.run(coro)


def test_plain_call_counts_tokens():
    with FakeLLM(scripted("four words in answer")) as fake:
        c = client_for(fake)
        res = run(c.complete(MSG))
    assert res.text == "four words in answer" and not res.cached
    assert res.completion_tokens == 4 and res.prompt_tokens == 1
    assert c.stats.calls == 1 and c.stats.completion_tokens == 4
    assert fake.requests[0]["model"] == "fake-model"


@pytest.mark.parametrize("fault", [Fault(status=429), Fault(status=500), Fault(status=503), Fault(garbage=True)])
def test_transient_faults_are_retried(fault):
    with FakeLLM(scripted(fault, fault, "ok")) as fake:
        c = client_for(fake)
        assert run(c.complete(MSG)).text == "ok"
    assert fake.count == 3 and c.stats.retries == 2 and c.stats.calls == 1


def test_retry_after_is_honoured():
    with FakeLLM(scripted(Fault(status=429, retry_after=0.6), "ok")) as fake:
        c = client_for(fake)
        start = time.perf_counter()
        run(c.complete(MSG))
    assert time.perf_counter() - start >= 0.6


def test_hang_times_out_and_is_retried():
    with FakeLLM(scripted(Fault(hang=5, text="late"), "fast")) as fake:
        c = client_for(fake, timeout=0.5)
        start = time.perf_counter()
        assert run(c.complete(MSG)).text == "fast"
        assert time.perf_counter() - start < 4
    assert c.stats.retries == 1


def test_gives_up_after_max_retries_with_the_reason():
    with FakeLLM(scripted(Fault(status=500))) as fake:
        c = client_for(fake, max_retries=2)
        with pytest.raises(LLMError, match="gave up after 3 attempts: 500"):
            run(c.complete(MSG))
    assert fake.count == 3 and c.stats.failures == 1


def test_permanent_errors_are_not_retried():
    with FakeLLM(scripted(Fault(status=401))) as fake:
        c = client_for(fake)
        with pytest.raises(LLMError, match="401"):
            run(c.complete(MSG))
    assert fake.count == 1


def test_cache_never_pays_twice_and_salt_separates(store):
    with FakeLLM(scripted("a", "b", "c")) as fake:
        c = client_for(fake, store=store, run_id=None)
        fresh = client_for(fake, store=store)  # another client (process) finds the answers in the store

        async def calls():
            return [await c.complete(MSG, salt="n1"), await c.complete(MSG, salt="n1"),
                    await c.complete(MSG, salt="n2"), await fresh.complete(MSG, salt="n1")]

        first, again, other, replay = run(calls())
    assert (first.text, again.text, other.text, replay.text) == ("a", "a", "b", "a")
    assert again.cached and replay.cached and not other.cached
    assert fake.count == 2 and c.stats.cache_hits == 1
    assert store.scalar("SELECT count(*) FROM llm_calls") == 2


def test_concurrency_limit_is_respected():
    state = {"now": 0, "max": 0}
    import threading

    lock = threading.Lock()

    def responder(body):
        return "x"

    with FakeLLM(responder, latency=lambda: 0.1) as fake:
        c = client_for(fake, concurrency=3)
        orig = c.backend.chat

        async def counting(*a, **k):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            try:
                return await orig(*a, **k)
            finally:
                with lock:
                    state["now"] -= 1

        c.backend.chat = counting

        async def many():
            await asyncio.gather(*(c.complete(MSG, salt=str(i)) for i in range(12)))

        run(many())
    assert state["max"] == 3
