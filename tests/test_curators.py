"""The curator role through real HTTP: every named endpoint of the running app, called with a
curator's and an annotator's login cookie; overrides and undo by a curator; role changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_judging_http import call
from tests.uihelpers import call_api, http_login, make_forest, make_user, start_app, stop_app
from wizardlab import auth
from wizardlab.errors import UserError
from wizardlab.store import Store

# what a curator may call (the rest is refused: "Only admins"); annotators are refused these too
CURATE = {"lineage_search", "lineage_search_page", "lineage_tree", "lineage_override", "lineage_undo", "data_show"}
CURATE_PREFIXES = ("review_",)
ANYONE_PREFIXES = ("judge_",)
# background refreshes that answer non-admins with empty updates (no data) instead of an error
SILENT = {"evolve_progress", "train_progress", "admin_refresh", "experiment_status"}
ADMIN_ONLY_REVIEW_PREFIX = "review_task_"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base_url, admin, password, ctx = start_app(tmp_path_factory.mktemp("curators"))
    make_user(ctx, "cur", "cur-pass-123", "curator")
    make_user(ctx, "cur2", "cur2-pass-123", "curator")
    make_user(ctx, "ann", "ann-pass-123", "annotator")
    yield base_url, admin, password, ctx
    stop_app(ctx)




def _public_endpoints(client) -> dict[str, list]:
    """api name -> an empty value per input, so each call reaches the callback's own role check."""
    config = client.get("/config").json()
    types = {c["id"]: c.get("type") for c in config["components"]}
    # None fails a CheckboxGroup's preprocessing before the callback (and its role check) runs
    empty = {cid: [] if kind == "checkboxgroup" else None for cid, kind in types.items()}
    return {d["api_name"]: [empty.get(i) for i in d["inputs"]] for d in config["dependencies"]
            if d.get("api_name") and d.get("api_visibility", "public") != "private"}


def _kind(api: str) -> str:
    if api.startswith(ANYONE_PREFIXES):
        return "any"
    if api in SILENT:
        return "silent"
    if api in CURATE or (api.startswith(CURATE_PREFIXES) and not api.startswith(ADMIN_ONLY_REVIEW_PREFIX)):
        return "curate"
    return "admin"


def _refused(event, payload, who: str) -> bool:
    return event == "error" and f"Only {who}" in json.dumps(payload)


def test_every_endpoint_enforces_the_curator_and_annotator_roles(app):
    """A new endpoint is admin-only unless listed above: the test calls it and expects a refusal."""
    base_url, _, _, ctx = app
    cur, ann = http_login(base_url, "cur", "cur-pass-123"), http_login(base_url, "ann", "ann-pass-123")
    endpoints = _public_endpoints(cur)
    assert {"lineage_override", "admin_set_role", "data_export_hf", "train_launch", "review_keep",
            "review_undo", "review_task_create", "review_task_apply"} <= set(endpoints)
    users_before = [dict(u) for u in ctx.store().list_users()]
    for api, data in endpoints.items():
        kind = _kind(api)
        (ec, pc), (ea, pa) = call_api(cur, api, data), call_api(ann, api, data)
        if kind == "admin":
            assert _refused(ec, pc, "admins"), (api, "curator", ec, pc)
            assert _refused(ea, pa, "admins"), (api, "annotator", ea, pa)
        elif kind == "curate":
            assert not _refused(ec, pc, ""), (api, "curator", ec, pc)
            assert _refused(ea, pa, "curators and admins"), (api, "annotator", ea, pa)
        elif kind == "silent":
            for event, payload in ((ec, pc), (ea, pa)):
                assert event == "complete" and "value" not in json.dumps(payload), (api, payload)
    assert [dict(u) for u in ctx.store().list_users()] == users_before


def test_curator_overrides_with_a_reason_and_undoes_only_their_own(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    run = make_forest(store, [{"instruction": f"seed {i}", "input": "", "response": "r"} for i in range(2)],
                      [[{"status": "eliminated", "instruction": f"e{i}", "response": "r",
                         "rules": ["no_information_gain"]} for i in range(2)]])
    n1, n2 = [n["id"] for n in store.iter_nodes(run) if n["round"] == 1]
    cur, cur2 = http_login(base_url, "cur", "cur-pass-123"), http_login(base_url, "cur2", "cur2-pass-123")
    event, payload = call_api(cur, "lineage_search", [run, "", "1", "any", "any", "no_information_gain", "root id"])
    assert event == "complete" and "2 roots match" in payload[0]
    event, payload = call_api(cur, "lineage_override", [str(n1), "restore", ""])
    assert event == "error" and "reason" in str(payload)
    event, payload = call_api(cur, "lineage_override", [str(n1), "restore", "the evolution adds a constraint"])
    assert event == "complete", payload
    row = store.node_overrides(n1)[-1]
    assert (row["user"], row["reason"], store.get_node(n1)["effective_status"]) == (
        "cur", "the evolution adds a constraint", "kept")
    event, payload = call_api(cur2, "lineage_undo", [str(row["id"])])
    assert event == "error" and "only their own" in str(payload) and store.get_override(row["id"])["undone_at"] is None
    event, payload = call_api(cur, "lineage_undo", [str(row["id"])])
    assert event == "complete" and store.get_override(row["id"])["undone_by"] == "cur"
    adm = http_login(base_url, admin, password)  # an admin may undo anyone's override
    call_api(cur2, "lineage_override", [str(n2), "restore", "fine"])
    event, _ = call_api(adm, "lineage_undo", [str(store.node_overrides(n2)[-1]["id"])])
    assert event == "complete" and store.get_node(n2)["effective_status"] == "eliminated"


def test_admin_changes_roles_over_http_and_guards_the_last_admin(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    make_user(ctx, "dan", "dan-pass-123", "annotator")
    adm = http_login(base_url, admin, password)
    event, payload = call_api(adm, "admin_set_role", ["dan", "curator"])
    assert event == "complete" and store.get_user("dan")["role"] == "curator", payload
    dan = http_login(base_url, "dan", "dan-pass-123")
    assert call_api(dan, "lineage_search", [None, "", "any", "any", "any", "any", "root id"])[0] == "complete"
    call_api(adm, "admin_set_role", ["dan", "annotator"])  # takes effect at once, same cookie
    assert _refused(*call_api(dan, "lineage_search", [None, "", "any", "any", "any", "any", "root id"]), "curators")
    event, payload = call_api(adm, "admin_set_role", [admin, "curator"])
    assert event == "error" and "your own role" in str(payload) and store.get_user(admin)["role"] == "admin"
    event, payload = call_api(adm, "admin_add_user", ["eve", "eve-pass-123", "curator"])
    assert event == "complete" and store.get_user("eve")["role"] == "curator"
    with pytest.raises(UserError, match="last active admin"):
        auth.set_role(store, admin, "annotator")


def test_users_cli_adds_a_curator_and_changes_roles(tmp_path):
    db = tmp_path / "u.db"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", "users", "--db", str(db), *args], cwd=REPO,
                              capture_output=True, text=True)

    out = cli("add", "cora", "--role", "curator", "--password", "cora-pass-123")
    assert out.returncode == 0 and "added curator cora" in out.stdout, out.stderr
    assert Store(db).get_user("cora")["role"] == "curator"
    out = cli("role", "cora", "annotator")
    assert out.returncode == 0 and Store(db).get_user("cora")["role"] == "annotator"
    out = cli("role", "nobody", "curator")
    assert out.returncode == 2 and "no user named 'nobody'" in out.stderr


def test_migration_keeps_existing_accounts(tmp_path):
    """A database made before the curator role keeps its users (ids, hashes) and accepts curators."""
    import sqlite3

    from wizardlab.store import schema

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    before = next(i for i, m in enumerate(schema.MIGRATIONS) if m.__name__.endswith("_curators"))
    for m in schema.MIGRATIONS[:before]:
        m(conn)
        conn.execute("INSERT INTO _migrations VALUES (?, 'x')", (m.__name__,))
    conn.execute("INSERT INTO users (username, password_hash, role) VALUES ('old', 'h', 'annotator')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.get_user("old")["role"] == "annotator" and store.password_hash("old") == "h"
    auth.add_user(store, "newcur", "newcur-pass-1", "curator")
    assert store.get_user("newcur")["role"] == "curator"


def test_review_queue_over_http_two_curators_then_admin_applies(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    run = make_forest(store, [{"instruction": f"seed {i}", "input": "", "response": "r"} for i in range(3)],
                      [[{"status": "eliminated", "instruction": f"evolved {i} <script>x</script>", "response": "r",
                         "rules": ["no_information_gain"]} for i in range(3)]])
    adm = http_login(base_url, admin, password)
    event, data = call_api(adm, "review_task_create", [run, "http task", "1", "no_information_gain", "any", "any",
                                                       "", None, 2, 0])
    assert event == "complete" and "3 nodes, k=2" in data[0], data
    tid = int(data[2])
    verdicts = {"cur": ["keep", "keep", "eliminate"], "cur2": ["keep", "eliminate", "eliminate"]}
    for name, pw in (("cur", "cur-pass-123"), ("cur2", "cur2-pass-123")):
        client, session = http_login(base_url, name, pw), f"s-{name}"
        event, data = call(client, "review_start", [tid], session)
        assert event == "complete" and "Parent instruction" in data[0] and "&lt;script&gt;" in data[0], data
        for verdict in verdicts[name]:
            event, data = call(client, f"review_{verdict}", [None, data[3]], session)
            assert event == "complete", data
        assert "Nothing left for you" in data[0]
    event, data = call(http_login(base_url, "cur", "cur-pass-123"), "review_undo", [None], "s-cur")
    assert event == "complete" and "evolved 2" in data[0]  # cur's last verdict reopened
    event, data = call(http_login(base_url, "cur", "cur-pass-123"), "review_eliminate", [None, data[3]], "s-cur")
    assert event == "complete"
    event, data = call_api(adm, "review_task_report", [str(tid), "majority"])
    assert event == "complete" and "Fleiss" in data[0] and "no_information_gain" in data[0]
    event, data = call_api(adm, "review_task_apply", [str(tid), "majority"])
    assert event == "complete" and "wrote 1 overrides (1 restore" in data[0], data
    restored = [n for n in store.iter_nodes(run) if n["round"] == 1 and n["effective_status"] == "kept"]
    assert [n["instruction"] for n in restored] == ["evolved 0 <script>x</script>"]
