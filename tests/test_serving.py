"""How the app serves a page: one page-load event for every tab, lean per-session state, a calm queue.

An admin login used to cost ~1-2 s of server CPU on a 2-core machine with no data at all: ~15
page-load events (one per tab), Gradio computing the config of every block for each new session,
and its queue polling every 1 ms. The login figure is measured in `bench/forest_scale.py`; these
tests check that the pieces behave as before for users.
"""

from __future__ import annotations

import json
import logging
import weakref

import gradio as gr
import httpx
import pytest
from gradio import state_holder

from eval_ui import app as app_module
from eval_ui.context import AppContext, PageLoads, at_page_load, on_show
from tests.uihelpers import http_login, make_user, start_app, stop_app
from wizardlab.config import Settings
from wizardlab.errors import UserError


def _server_loads(demo: gr.Blocks) -> list:
    return [f for f in demo.fns.values() if f.fn is not None and any(t[1] == "load" for t in f.targets)]


@pytest.fixture
def ctx(tmp_path):
    return AppContext(Settings.from_env(db=str(tmp_path / "app.db"), data_dir=str(tmp_path / "data")))


def test_the_app_has_one_page_load_event_for_every_tab(ctx):
    demo = app_module.build_app(ctx)
    loads = _server_loads(demo)
    assert len(loads) == 1, [f.name for f in loads]
    outputs = {b._id for b in loads[0].outputs}
    header = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "wl-header")
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab) and (b.elem_id or "").startswith("wl-tab-")]
    assert len(tabs) == len(app_module.TABS) and header._id in outputs and {t._id for t in tabs} <= outputs
    assert loads[0].concurrency_limit is None  # many annotators logging in at once do not queue


class _Req:  # what the parts read from a request in these tests: nothing
    pass


def test_a_failing_part_leaves_its_outputs_and_not_the_others(caplog):
    def good(request: gr.Request):
        return "ok"

    def refused(request: gr.Request):
        raise UserError("the store is locked")

    def crashed(request: gr.Request):
        raise RuntimeError("boom")

    def two(request: gr.Request):
        return "a", "b"

    def wrong_count(request: gr.Request):
        return "only one"

    with gr.Blocks() as demo, PageLoads.gathering() as loads:
        boxes = [gr.Textbox() for _ in range(7)]
        at_page_load(good, [boxes[0]])
        at_page_load(refused, boxes[1])
        at_page_load(crashed, [boxes[2]])
        at_page_load(two, boxes[3:5])
        at_page_load(wrong_count, boxes[5:7])
        loads.attach(demo)
    assert len(_server_loads(demo)) == 1 and loads.outputs == boxes
    with caplog.at_level(logging.WARNING, logger="wizardlab.ui"):
        out = loads(_Req())
    skip = gr.skip()
    assert out[0] == "ok" and out[3:5] == ["a", "b"]
    assert [out[i] == skip for i in (1, 2, 5, 6)] == [True] * 4
    logged = caplog.text
    assert "the store is locked" in logged and "boom" in logged and "returned 'only one' for 2 outputs" in logged


def test_parts_that_cannot_share_the_event_keep_their_own():
    def part(request: gr.Request):
        return "x"

    def with_input(value, request: gr.Request):
        return value

    def no_request():
        return "y"

    with gr.Blocks() as demo, PageLoads.gathering() as loads:
        a, b, c = gr.Textbox(), gr.Textbox(), gr.Textbox()
        at_page_load(part, [a])
        at_page_load(part, [a])  # a block written by two parts: their order would decide
        at_page_load(with_input, [b], inputs=[a])
        at_page_load(no_request, [c])
        loads.attach(demo)
    assert [fn for fn, _ in loads.parts] == [part]
    assert len(_server_loads(demo)) == 4


def test_outside_gathering_a_tab_keeps_its_own_load_and_select():
    def show(request: gr.Request):
        return "shown"

    with gr.Blocks() as demo:
        with gr.Tab("T"):
            box = gr.Textbox()
            on_show(show, [box])
    kinds = sorted(t[1] for f in demo.fns.values() for t in f.targets)
    assert kinds == ["load", "select"]


def test_lean_session_state_is_gradios_without_the_upfront_config(ctx):
    demo = app_module.build_app(ctx)
    full = app_module.LeanSessionState.__bases__[0](demo)  # Gradio's own (the app may have installed ours)
    lean = app_module.LeanSessionState(demo)
    assert set(vars(full)) == set(vars(lean))  # Gradio's __init__ sets nothing else we would miss
    assert len(full.config_values) > 100 and lean.config_values == {}
    assert lean.blocks_config.blocks.keys() == full.blocks_config.blocks.keys()
    assert lean.blocks_config is not demo.default_config  # a copy per session, as in Gradio
    key = next(k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox))
    lean._update_value_in_config(key, "typed")  # what an event does with an input: per block, on demand
    full._update_value_in_config(key, "typed")
    assert lean.config_values[key] == full.config_values[key]
    assert lean[key] is full[key] is demo.blocks[key]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base_url, admin, password, ctx = start_app(tmp_path_factory.mktemp("serving"))
    make_user(ctx, "ann", "ann-pass-123", "annotator")
    yield base_url, admin, password, ctx
    stop_app(ctx)


def _page_load(client: httpx.Client, base_url: str) -> list:
    """What the browser does after login: join the queue with the page-load event, read its SSE."""
    config = client.get(f"{base_url}/config").json()
    fn_index = next(d["id"] for d in config["dependencies"]
                    if any(t[1] == "load" for t in d["targets"]) and d.get("backend_fn"))
    session = f"test-{id(client)}"
    r = client.post(f"{base_url}/gradio_api/queue/join",
                    json={"data": [], "fn_index": fn_index, "session_hash": session, "event_data": None,
                          "trigger_id": None})
    assert r.status_code == 200, r.text
    with client.stream("GET", f"{base_url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    assert msg["success"], msg
                    return msg["output"]["data"]
    raise AssertionError("no result")


def test_the_page_load_shows_each_role_its_tabs_over_http(app):
    base_url, admin, password, ctx = app
    assert ctx._demo._queue.sleep_when_free == app_module.QUEUE_POLL_S
    assert state_holder.SessionState is app_module.LeanSessionState
    outputs = _server_loads(ctx._demo)[0].outputs
    tab_pos = {b.elem_id: i for i, b in enumerate(outputs) if isinstance(b, gr.Tab)}
    for user, pw, shown, hidden in ((admin, password, "wl-tab-evolve", None), ("ann", "ann-pass-123", "wl-tab-judge",
                                                                                "wl-tab-evolve")):
        data = _page_load(http_login(base_url, user, pw), base_url)
        assert len(data) == len(outputs)
        at = next(i for i, b in enumerate(outputs) if b.elem_id == "wl-header")
        header = data[at] if isinstance(data[at], str) else data[at].get("value", "")
        assert f">{user} · " in header
        assert data[tab_pos[shown]].get("visible") is True
        if hidden:
            assert data[tab_pos[hidden]].get("visible") is False


def test_hardware_is_detected_once_even_when_asked_during_the_detection(monkeypatch):
    import threading
    import time

    from eval_ui import train
    from wizardlab.training.config import Hardware

    calls = []

    def detect():
        calls.append(threading.current_thread().name)
        time.sleep(0.3)
        return Hardware(cpus=3)

    monkeypatch.setattr(train, "_HARDWARE", [])
    monkeypatch.setattr(train, "_detect_hardware", detect)
    warm = train.warm_hardware()  # what `python app.py` does at start
    time.sleep(0.05)
    asked = [None] * 3
    askers = [threading.Thread(target=lambda i=i: asked.__setitem__(i, train.hardware())) for i in range(3)]
    for t in askers:
        t.start()
    for t in (warm, *askers):
        t.join(10)
    assert calls == ["detect hardware"] and asked == [Hardware(cpus=3)] * 3


def test_settle_heap_takes_what_exists_out_of_garbage_collection():
    """Before serving, the app freezes its heap: a full collection then walks only what requests
    created since, not the modules and blocks (a big search was paying ~0.1 s for them)."""
    import gc

    class Cycle:
        pass

    before = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # lists: objects the collector tracks
    garbage = Cycle()
    garbage.me = garbage  # unreachable once deleted: collected first, not frozen forever
    probe = weakref.ref(garbage)
    del garbage
    assert any(o is kept for o in gc.get_objects())
    try:
        frozen = app_module.settle_heap()
        assert probe() is None and frozen >= before + len(kept)
        assert not any(o is kept for o in gc.get_objects())  # frozen: out of the collector's lists
    finally:
        gc.unfreeze()
