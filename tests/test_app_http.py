"""Role enforcement through real HTTP: the running Gradio app, its login cookie and its API."""

from __future__ import annotations

import httpx
import pytest

from tests.uihelpers import call_api, http_login, make_forest, make_user, start_app, stop_app
from wizardlab import auth


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base_url, admin, password, ctx = start_app(tmp_path_factory.mktemp("http"))
    make_user(ctx, "ann", "ann-pass-123", "annotator")
    yield base_url, admin, password, ctx
    stop_app(ctx)


def test_login_required_and_wrong_password_refused(app):
    base_url, admin, _, _ = app
    anon = httpx.Client(base_url=base_url, timeout=30)
    assert anon.post("/gradio_api/call/admin_add_user", json={"data": ["x", "xxxxxxxx", "annotator"]}).status_code == 401
    assert anon.post("/login", data={"username": admin, "password": "wrong-password"}).status_code == 400


def test_annotator_is_refused_admin_endpoints_on_the_server(app):
    base_url, _, _, ctx = app
    store = ctx.store()
    run = make_forest(store, [{"instruction": "seed", "input": "", "response": "r"}],
                      [[{"status": "eliminated", "instruction": "e", "response": "r", "rules": ["malformed"]}]])
    node = next(n for n in store.iter_nodes(run) if n["round"] == 1)
    ann = http_login(base_url, "ann", "ann-pass-123")
    event, payload = call_api(ann, "admin_add_user", ["mallory", "mallory-pw-1", "admin"])
    assert event == "error" and store.get_user("mallory") is None
    event, _ = call_api(ann, "lineage_override", [node["id"], "restore", "sneaky"])
    assert event == "error" and store.node_overrides(node["id"]) == []
    event, _ = call_api(ann, "evolve_start", ["Built-in demo seeds (24)", None, 1, 1, "", "", 0, 2])
    assert event == "error" and store.list_runs("evolve")[0]["id"] == run
    event, _ = call_api(ann, "lineage_tree", [node["root_id"]])
    assert event == "error"


def test_admin_can_and_disabling_cuts_a_live_session(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    adm = http_login(base_url, admin, password)
    event, payload = call_api(adm, "admin_add_user", ["bea", "bea-pass-123", "annotator"])
    assert event == "complete", payload
    assert store.get_user("bea")["role"] == "annotator"
    bea = http_login(base_url, "bea", "bea-pass-123")
    event, _ = call_api(adm, "admin_disable_user", ["bea"])
    assert event == "complete" and store.get_user("bea")["disabled"] == 1
    # bea's cookie is still valid for Gradio, but the server looks her up on every call
    event, _ = call_api(bea, "lineage_tree", [1])
    assert event == "error"
    assert httpx.post(f"{base_url}/login", data={"username": "bea", "password": "bea-pass-123"}).status_code == 400
    assert not auth.authenticate(store, "bea", "bea-pass-123")
