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
    refused = ("error", "Only admins")
    event, payload = call_api(ann, "admin_add_user", ["mallory", "mallory-pw-1", "admin"])
    assert (event, refused[1] in str(payload)) == (refused[0], True) and store.get_user("mallory") is None
    event, payload = call_api(ann, "lineage_override", [str(node["id"]), "restore", "sneaky"])
    assert (event, "Only curators and admins" in str(payload)) == (refused[0], True)
    assert store.node_overrides(node["id"]) == []
    event, payload = call_api(ann, "evolve_start", ["Built-in demo seeds (24)", None, 1, 1, "", "", 0, 2,
                                                    None, None, None, "", "paper"])
    assert (event, refused[1] in str(payload)) == (refused[0], True)
    assert store.list_runs("evolve")[0]["id"] == run
    event, payload = call_api(ann, "lineage_tree", [str(node["root_id"])])
    assert (event, "Only curators and admins" in str(payload)) == (refused[0], True)


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
    event, payload = call_api(bea, "lineage_tree", ["1"])
    assert event == "error" and "log in again" in str(payload)
    refused = httpx.post(f"{base_url}/login", data={"username": "bea", "password": "bea-pass-123"})
    assert refused.status_code == 403 and "disabled" in refused.text  # told only with the right password
    wrong = httpx.post(f"{base_url}/login", data={"username": "bea", "password": "not-her-password"})
    assert wrong.status_code == 400 and "disabled" not in wrong.text
    assert not auth.authenticate(store, "bea", "bea-pass-123")


def test_admin_overrides_single_and_bulk_over_http(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    seeds = [{"instruction": f"seed {i}", "input": "", "response": "r"} for i in range(3)]
    run = make_forest(store, seeds, [[{"status": "eliminated", "instruction": f"e{i}", "response": "r",
                                       "rules": ["no_information_gain"]} for i in range(3)]])
    adm = http_login(base_url, admin, password)
    event, payload = call_api(adm, "lineage_bulk_count", [run, "", "1", "any", "any", "no_information_gain",
                                                         "restore", ""])
    assert event == "complete" and "would change 3 nodes" in payload[0]
    event, payload = call_api(adm, "lineage_bulk_apply", [run, "", "1", "any", "any", "no_information_gain",
                                                         "restore", "reviewed"])
    assert event == "complete", payload
    assert [n["effective_status"] for n in store.iter_nodes(run) if n["round"] == 1] == ["kept"] * 3
    node = next(n for n in store.iter_nodes(run) if n["round"] == 1)
    event, payload = call_api(adm, "lineage_override", [str(node["id"]), "eliminate", "checked again"])
    assert event == "complete" and store.get_node(node["id"])["effective_status"] == "eliminated"
    event, payload = call_api(adm, "lineage_override", ["12x", "eliminate", "typo"])
    assert event == "error" and "node id must be a positive whole number" in str(payload)


def test_app_py_starts_prints_the_first_admin_password_once(tmp_path):
    import os
    import re
    import subprocess
    import sys
    import time

    from tests.uihelpers import REPO, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != auth.ADMIN_ENV}
    argv = [sys.executable, str(REPO / "app.py"), "--db", str(tmp_path / "w.db"), "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline, up = time.time() + 60, False
        while time.time() < deadline and not up:
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        text = log.read_text()
        assert up, text
        password = re.search(r"user: admin\s+password: (\S+)", text).group(1)
        assert "LLM: m at http://127.0.0.1:9/v1" in text
        http_login(f"http://127.0.0.1:{port}", "admin", password)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_llm_model_name_never_reaches_an_annotator(tmp_path):
    """An output set may come from the configured LLM: its name would unblind annotators."""
    base_url, admin, password, ctx = start_app(tmp_path, base_url="http://127.0.0.1:9/v1",
                                               model="secret-model-7b")
    try:
        make_user(ctx, "ann", "ann-pass-123", "annotator")
        ann = http_login(base_url, "ann", "ann-pass-123")
        assert "secret-model-7b" not in ann.get("/config").text
        assert "secret-model-7b" not in ann.get("/").text
        from eval_ui.app import header_html

        assert "secret-model-7b" not in header_html(ctx, ctx.store().get_user("ann"))
        assert "secret-model-7b" in header_html(ctx, ctx.store().get_user(admin))
    finally:
        stop_app(ctx)


def test_lineage_search_pages_through_every_match_and_sorts(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    run = store.create_run("evolve", {}, status="done")
    store.insert_seeds(run, [{"instruction": f"paging topic {i}", "response": "r"} for i in range(120)])
    adm = http_login(base_url, admin, password)
    filters = [str(run), "paging topic", "any", "any", "any", "any", "root id"]
    event, (note, table, page) = call_api(adm, "lineage_search", filters)
    assert event == "complete" and page == 1 and "120 roots match" in note and "page 1 of 3" in note
    first = [row[0] for row in table["data"]]
    assert len(first) == 50 and first == sorted(first)
    event, (note, table, page) = call_api(adm, "lineage_search_page", [*filters, 3])
    assert page == 3 and len(table["data"]) == 20 and "roots 101–120" in note
    event, (note, table, page) = call_api(adm, "lineage_search_page", [*filters, 99])
    assert page == 3  # clamped to the last page
    newest = [*filters[:-1], "newest root"]
    event, (note, table, page) = call_api(adm, "lineage_search", newest)
    assert [row[0] for row in table["data"]][:3] == sorted(first + [row[0] for row in table["data"]])[::-1][:3]
