"""The model server (`wizardlab.llm.model_server`): a local model loaded once, shared by later commands.

Real processes and a real Unix socket, on the tiny scripted LLaMA of `test_llm_local` (its greedy
answer to MESSAGES is known exactly); each test has its own short cache dir and stops its servers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_llm_local import CHAT_TEMPLATE, MESSAGES, _scripted_llama, _tokenizer
from wizardlab.config import Settings
from wizardlab.llm import LLMClient, PermanentError, TransientError, make_backend, model_server
from wizardlab.llm.local import LocalBackend, render_plain


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict:
    """The scripted tiny model as a base model ('base') and with a chat template ('chat': its answer
    runs on until max_tokens, so a request can be made to last)."""
    root = tmp_path_factory.mktemp("tiny-served")
    tokenizer = _tokenizer()
    model = _scripted_llama(tokenizer, tokenizer(render_plain(MESSAGES)).input_ids[-1])
    dirs = {"base": root / "base", "chat": root / "chat"}
    for name, path in dirs.items():
        tokenizer.chat_template = CHAT_TEMPLATE if name == "chat" else None
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return dirs


@pytest.fixture
def cache():
    """A cache dir with a short path (a Unix socket path holds ~100 bytes); its servers stopped after."""
    path = Path(tempfile.mkdtemp(prefix="wl-ms-"))
    yield path
    model_server.stop_servers(path)
    shutil.rmtree(path, ignore_errors=True)


def _chat(backend, messages=MESSAGES, **kw):
    kw = {"max_tokens": 20, "temperature": 0.0, "stop": None, "timeout": 60.0, **kw}
    return backend.chat(messages, **kw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_commands_share_one_loaded_server_with_the_in_process_answers(tiny_dirs, cache):
    local = LocalBackend(tiny_dirs["base"], cache_dir=cache)
    alone = asyncio.run(_chat(local))
    asyncio.run(local.aclose())
    settings = Settings.from_env(model=str(tiny_dirs["base"]), cache_dir=str(cache), keep_model_s=60)

    async def command(n: int):
        backend = make_backend(settings)
        answers = await asyncio.gather(*[_chat(backend) for _ in range(n)])
        await backend.aclose()
        return backend, answers

    first, answers = asyncio.run(command(3))
    assert isinstance(first, model_server.ServedBackend) and first.identity == local.identity
    assert first.started_server and not first.hello["loaded"] and first.load_s > 0  # it waited for the load
    assert [(a.text, a.completion_tokens, a.prompt_tokens) for a in answers] == \
        [(alone.text, alone.completion_tokens, alone.prompt_tokens)] * 3 and alone.text == "The answer is 42."
    sock = model_server.socket_path(cache, first.identity)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    second, answers = asyncio.run(command(1))  # the next command: the same server, loaded, nothing waited
    assert not second.started_server and second.hello["loaded"] and second.load_s is None
    assert second.hello["pid"] == first.hello["pid"] and second.hello["served"] == 3
    assert answers[0].text == alone.text

    listed = subprocess.run([sys.executable, "-m", "pipeline", "model-server"], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "WIZARDLAB_CACHE": str(cache)}, timeout=60)
    assert listed.returncode == 0 and f"pid {first.hello['pid']}: {tiny_dirs['base']} loaded" in listed.stdout
    assert "4 answered" in listed.stdout
    stopped = subprocess.run([sys.executable, "-m", "pipeline", "model-server", "--stop"], cwd=REPO,
                             capture_output=True, text=True, env={**os.environ, "WIZARDLAB_CACHE": str(cache)},
                             timeout=60)
    assert "stopped 1 model server(s)" in stopped.stdout and not sock.exists()
    deadline = time.monotonic() + 30
    while _alive(first.hello["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(first.hello["pid"])


def test_commands_starting_at_once_start_one_server_which_exits_when_idle(tiny_dirs, cache):
    identity = LocalBackend(tiny_dirs["base"]).identity
    started = []

    def start():
        started.append(model_server.ensure_server(str(tiny_dirs["base"]), cache, identity, 1.0))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(started) == [False, False, False, True]
    (info,) = model_server.servers(cache)
    backend = model_server.ServedBackend(str(tiny_dirs["base"]), cache_dir=cache, keep_s=1.0)
    assert asyncio.run(_chat(backend)).text == "The answer is 42."
    assert asyncio.run(_chat(backend)).text == "The answer is 42."  # the same backend in a new event loop
    deadline = time.monotonic() + 60  # 1 s after its answer (and its load) it exits and removes its socket
    while model_server.servers(cache) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model_server.servers(cache) == []
    while _alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(info["pid"])


def test_a_killed_server_is_replaced_and_no_call_is_lost(tiny_dirs, cache, store):
    backend = model_server.ServedBackend(str(tiny_dirs["chat"]), cache_dir=cache, keep_s=60)
    client = LLMClient(backend, store=store, max_retries=3, backoff_base=0.05)

    async def run():
        long = asyncio.create_task(client.complete(MESSAGES, max_tokens=1000, temperature=0))  # runs for a while
        short = await client.complete(MESSAGES, max_tokens=3, temperature=0)
        pid = backend.hello["pid"]
        os.kill(pid, signal.SIGKILL)  # mid-generation: no goodbye, the socket file is left behind
        result = await long
        await client.aclose()
        return pid, short, result

    pid, short, result = asyncio.run(run())
    assert short.text == "The answer is 42.\n\n### Instruction:\nNext question?" and short.attempts == 1
    assert result.attempts == 2 and result.completion_tokens == 1000 and result.text.startswith(short.text)
    (info,) = model_server.servers(cache)  # a new server took the left socket's place
    assert info["pid"] != pid and info["served"] == 1
    assert client.stats.calls == 2 and client.stats.failures == 0 and client.stats.retries == 1
    assert store.scalar("SELECT COUNT(*) FROM llm_calls") == 2


def test_a_bad_model_dir_is_the_same_one_line_error_as_in_process(tmp_path, cache):
    missing = tmp_path / "no-such-model"
    local = LocalBackend(missing)
    with pytest.raises(PermanentError) as in_process:
        asyncio.run(_chat(local))
    backend = model_server.ServedBackend(str(missing), cache_dir=cache, keep_s=60)

    async def ask():
        try:
            return await _chat(backend)
        finally:
            await backend.aclose()

    with pytest.raises(PermanentError) as served:
        asyncio.run(ask())
    assert str(served.value) == str(in_process.value) and "\n" not in str(served.value)
    assert not isinstance(served.value, TransientError)


def test_keep_zero_loads_in_process_and_a_long_cache_path_falls_back_to_it(tiny_dirs, cache, monkeypatch):
    settings = Settings.from_env(model=str(tiny_dirs["base"]), cache_dir=str(cache), keep_model_s=0)
    assert isinstance(make_backend(settings), LocalBackend)
    deep = cache / ("x" * 120)
    settings = Settings.from_env(model=str(tiny_dirs["base"]), cache_dir=str(deep), keep_model_s=60)
    assert isinstance(make_backend(settings), LocalBackend)
    assert isinstance(make_backend(Settings.from_env(model=str(tiny_dirs["base"]), cache_dir=str(cache),
                                                     keep_model_s=60)), model_server.ServedBackend)
    monkeypatch.chdir(tiny_dirs["base"].parent)  # a relative model dir reaches the server (elsewhere) absolute
    relative = make_backend(Settings.from_env(model="base", cache_dir=str(cache), keep_model_s=60))
    assert relative.model_dir == str(tiny_dirs["base"]) and relative.model == "base"
    assert relative.identity == LocalBackend(tiny_dirs["base"]).identity


def test_the_admin_tab_loads_lists_and_stops_the_model_server(tiny_dirs, cache, tmp_path):
    from tests.uihelpers import call_api, http_login, make_user, start_app, stop_app

    base_url, admin, password, ctx = start_app(tmp_path, model=str(tiny_dirs["base"]), cache_dir=str(cache),
                                               keep_model_s=60)
    try:
        make_user(ctx, "ann", "ann-pass-123")
        ann = http_login(base_url, "ann", "ann-pass-123")
        event, data = call_api(ann, "admin_model_load", [])
        assert event == "error" and "Only admins" in str(data) and model_server.servers(cache) == []
        adm = http_login(base_url, admin, password)
        event, data = call_api(adm, "admin_refresh", [])
        assert event == "complete" and "No model server runs" in data[4]
        event, data = call_api(adm, "admin_model_load", [])
        (info,) = model_server.servers(cache)
        assert event == "complete" and f"Model server pid {info['pid']} holds {tiny_dirs['base']}" in data[0]
        assert info["loaded"]
        event, data = call_api(adm, "admin_refresh", [])
        assert f"pid {info['pid']}: {tiny_dirs['base']} loaded" in data[4]
        event, data = call_api(ann, "admin_model_stop", [])
        assert event == "error" and model_server.servers(cache) != []
        event, data = call_api(adm, "admin_model_stop", [])
        assert event == "complete" and "Stopped 1 model server(s)" in data[0] and model_server.servers(cache) == []
    finally:
        stop_app(ctx)


def test_where_no_server_can_start_the_model_runs_in_this_process(tiny_dirs, cache):
    (cache / model_server.SERVER_SUBDIR).write_text("a file where the servers' directory would be")
    backend = model_server.ServedBackend(str(tiny_dirs["base"]), cache_dir=cache, keep_s=60)

    async def ask():
        try:
            return await asyncio.gather(_chat(backend), _chat(backend))
        finally:
            await backend.aclose()

    answers = asyncio.run(ask())
    assert [a.text for a in answers] == ["The answer is 42."] * 2 and backend.load_s > 0
    assert backend.fallback_reason and backend.hello is None and model_server.servers(cache) == []
    cli = subprocess.run([sys.executable, "-m", "pipeline", "model-server", "--start", "--model",
                          str(tiny_dirs["base"])], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "WIZARDLAB_CACHE": str(cache), "WIZARDLAB_KEEP_MODEL_S": "60"})
    assert cli.returncode == 2 and cli.stderr.startswith("error: no model server could start: ")
    assert len(cli.stderr.strip().splitlines()) == 1


def test_the_callers_deadline_counts_the_time_spent_reaching_the_server(tiny_dirs, cache, monkeypatch):
    """A row still generating at its deadline is answered as it stands: the server must cut it at the
    caller's deadline, not `timeout` after the request reached it (LLMClient gives up 5 s later)."""
    warm = model_server.ServedBackend(str(tiny_dirs["chat"]), cache_dir=cache, keep_s=60)
    assert asyncio.run(_chat(warm, max_tokens=2)).completion_tokens == 2  # started and loaded
    real = model_server.ensure_server

    def slow(*args):  # reaching the server takes 2 s (a busy machine, a server still starting)
        time.sleep(2.0)
        return real(*args)

    monkeypatch.setattr(model_server, "ensure_server", slow)
    backend = model_server.ServedBackend(str(tiny_dirs["chat"]), cache_dir=cache, keep_s=60)
    start = time.monotonic()
    answer = asyncio.run(_chat(backend, max_tokens=100_000, timeout=4.0))  # would generate for minutes
    elapsed = time.monotonic() - start
    assert 3.9 < elapsed < 5.0 and answer.completion_tokens > 10
