"""A pool of endpoints: parsing, the split by weight, fail-over when one endpoint dies mid-run."""

import asyncio
import threading

import pytest

from pipeline.__main__ import main as cli
from tests.fakellm import Fault, FakeLLM, evol_responder
from tests.test_evolve import write_seeds
from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.llm import LLMClient, make_backend
from wizardlab.llm.openai_backend import OpenAIBackend
from wizardlab.llm.pool import Endpoint, PoolBackend, parse_endpoints
from wizardlab.store import Store

MSG = [{"role": "user", "content": "hello"}]


def test_parse_endpoints_and_errors():
    eps = parse_endpoints("http://a/v1/ https://b/v1,model=m2,weight=2.5", "m1")
    assert eps == [Endpoint("http://a/v1", "m1", 1.0), Endpoint("https://b/v1", "m2", 2.5)]
    for spec, needle in (("ftp://a", "http://"), ("http://a,weight=0", "positive"), ("http://a,wait=2", "unknown"),
                         ("http://a,weight=x", "number")):
        with pytest.raises(UserError, match=needle):
            parse_endpoints(spec, "m")
    with pytest.raises(UserError, match="needs a model"):
        parse_endpoints("http://a/v1,model=x http://b/v1", None)


def test_settings_keep_a_pool_and_one_endpoint_stays_plain():
    s = Settings(base_url=["http://a/v1,model=x", "http://b/v1,model=y,weight=3"])
    assert s.base_url == "http://a/v1,model=x http://b/v1,model=y,weight=3"
    assert "pool of 2" in s.llm_label
    pool = make_backend(s)
    assert isinstance(pool, PoolBackend) and pool.identity == "pool|x|y"
    single = make_backend(Settings(base_url=["http://a/v1"], model="m"))
    assert isinstance(single, OpenAIBackend) and single.identity == "openai|http://a/v1|m"
    with pytest.raises(UserError, match="needs --model"):
        Settings(base_url="http://a/v1")


def test_calls_split_by_weight():
    with FakeLLM(lambda b: "a", latency=lambda: 0.03) as a, FakeLLM(lambda b: "b", latency=lambda: 0.03) as b:
        backend = PoolBackend([Endpoint(a.base_url, "m", 3), Endpoint(b.base_url, "m", 1)])
        client = LLMClient(backend, concurrency=16, max_retries=0)

        async def go():
            await asyncio.gather(*(client.complete(MSG, salt=str(i)) for i in range(400)))
            await client.aclose()

        asyncio.run(go())
    share = a.count / (a.count + b.count)
    assert a.count + b.count == 400 and abs(share - 0.75) <= 0.075, (a.count, b.count)
    stats = {e["base_url"]: e for e in client.stats_dict()["endpoints"]}
    assert stats[a.base_url]["calls"] == a.count and stats[b.base_url]["calls"] == b.count


def test_5xx_burst_takes_an_endpoint_out_and_calls_go_elsewhere():
    with FakeLLM(lambda b: Fault(status=503)) as bad, FakeLLM(lambda b: "ok") as good:
        backend = PoolBackend([Endpoint(bad.base_url, "m", 10), Endpoint(good.base_url, "m", 1)], backoff_s=60)
        client = LLMClient(backend, concurrency=1, max_retries=0)

        async def go():
            texts = [(await client.complete(MSG, salt=str(i))).text for i in range(10)]
            await client.aclose()
            return texts

        assert asyncio.run(go()) == ["ok"] * 10
    assert bad.count == 3 and good.count == 10  # a burst of 3 failures, then backing off
    assert client.stats.retries == 0 and client.stats.failures == 0
    assert [e["down"] for e in backend.endpoint_stats()] == [True, False]


def test_one_endpoint_killed_mid_run_loses_nothing(tmp_path):
    """Evolve over two endpoints; one dies after 20 calls: the run ends with every node done, no call failed."""
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Explain topic number {i} in detail." for i in range(40)])
    db = tmp_path / "pool.db"
    with FakeLLM(evol_responder, latency=lambda: 0.05) as a, FakeLLM(latency=lambda: 0.05) as b:
        stopping = threading.Event()

        def doomed(body):  # b.count counts arrivals: with calls in flight it can pass 20 between two answers
            if b.count >= 20 and not stopping.is_set():
                stopping.set()
                threading.Thread(target=b.stop, daemon=True).start()
            return evol_responder(body)

        b.responder = doomed
        assert cli(["evolve", "--db", str(db), "--seeds", str(seeds), "--base-url", a.base_url, "--base-url",
                    b.base_url, "--model", "fake", "--rounds", "1", "--concurrency", "8", "--max-retries", "0",
                    "--quiet"]) == 0
    store = Store(db)
    run = store.list_runs("evolve")[0]
    counts = {r["round"]: r for r in store.counts_by_round(run["id"])}
    assert counts[0]["seed"] == 40 and counts[1]["total"] == 40 and counts[1]["pending"] == 0
    assert run["status"] == "done"
    assert not store.query("SELECT error FROM nodes WHERE error LIKE '%call failed%'")
    endpoints = {e["base_url"]: e for e in run["progress"]["endpoints"]}
    ea, eb = endpoints[a.base_url], endpoints[b.base_url]
    assert ea["calls"] + eb["calls"] == 120  # 40 nodes x 3 calls, each answered once
    assert eb["errors"] >= 1 and eb["down"] and ea["calls"] > eb["calls"]
    assert run["progress"]["retries"] == 0 and run["progress"]["errors"] == 0
    from eval_ui.evolve import progress_html

    html = progress_html(store, run["id"])
    assert "Endpoints" in html and b.base_url in html and "backing off" in html


def test_evolve_tab_takes_one_endpoint_per_line():
    from eval_ui.evolve import DEMO, BatchForm

    form = BatchForm.parse(DEMO, None, 1, 4, "http://a/v1\n http://b/v1,weight=2\n", "m", 0, 0)
    assert form.base_url == "http://a/v1 http://b/v1,weight=2"
    with pytest.raises(UserError, match="weight"):
        BatchForm.parse(DEMO, None, 1, 4, "http://a/v1\nhttp://b/v1,weight=-1", "m", 0, 0)


def test_embeddings_from_an_endpoint_are_cached_per_model(store):
    """--embed-base-url: vectors from /v1/embeddings, unit length, cached under the endpoint's model."""
    import numpy as np

    from wizardlab.analysis.embeddings import EMBED_MODEL, EndpointEmbedder, embed_texts

    texts = ["a short one", "a somewhat longer instruction text", "a short one", "mid length text"]
    with FakeLLM() as fake:
        embedder = EndpointEmbedder(fake.base_url, "fake-embed")
        vectors, report = embed_texts(store, texts, embedder=embedder, batch_size=2)
        again, second = embed_texts(store, texts, embedder=embedder)
    assert vectors.shape == (4, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert (report.texts, report.embedded, second.embedded, second.cached) == (3, 3, 0, 3)
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors, again)
    assert fake.count == 2  # 3 new texts in batches of 2; the second call was all cache
    assert store.count_embeddings("endpoint:fake-embed") == 3 and store.count_embeddings(EMBED_MODEL) == 0
    with pytest.raises(UserError, match="embeddings endpoint"):
        embed_texts(store, ["new"], embedder=EndpointEmbedder("http://127.0.0.1:9/v1", "x", timeout=2))
