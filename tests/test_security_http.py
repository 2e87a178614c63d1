"""Issue 12 through real HTTP: nothing before login (no endpoint names, no server paths, no data),
escaped pop-up messages built from user or file text, expected errors as one log line.

The real app runs in-process (tests.uihelpers.start_app); requests go through its real login
and Gradio's HTTP API.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest

from tests.uihelpers import REPO, call_api, http_login, make_user, start_app, stop_app

UNAUTH_PATHS = ("/", "/?view=api", "/?page=", "/config", "/gradio_api/info", "/gradio_api/info?all_endpoints=true",
                "/gradio_api/openapi.json", "/gradio_api/startup-events", "/gradio_api/app_id", "/manifest.json",
                "/theme.css", "/gradio_api/queue/status", "/monitoring", "/gradio_api/upload_progress")
LINK = '<a href="http://evil.example/">Click to re-login</a>'
IMAGE = '<img src="http://evil.example/pixel.png">'


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    exports = tmp / "data" / "exports"
    exports.mkdir(parents=True)
    (exports / "secret-export-7b.json").write_text("[]")  # a data file present when the app starts
    base_url, admin, password, ctx = start_app(tmp)
    make_user(ctx, "ann", "ann-pass-123")
    ctx.store().create_run("evolve", {"n_seeds": 1}, name="Confidential seed run", status="done")
    yield base_url, admin, password, ctx, tmp
    stop_app(ctx)


def _api_names(ctx) -> set[str]:
    return {fn.api_name for fn in ctx._demo.fns.values() if isinstance(fn.api_name, str) and fn.api_name}


def test_nothing_before_login(app):
    base_url, _, _, ctx, tmp = app
    names = _api_names(ctx)
    assert {"admin_add_user", "admin_set_password", "train_launch", "eval_import"} <= names
    secrets = [str(tmp), str(Path(ctx.settings.db).resolve()), "secret-export-7b", "Confidential seed run"]
    anon = httpx.Client(base_url=base_url, timeout=30)
    for path in UNAUTH_PATHS:
        body = anon.get(path).text
        leaked = sorted(n for n in names if re.search(rf"\b{re.escape(n)}\b", body))
        assert not leaked, (path, leaked[:5])
        assert not [s for s in secrets if s in body], path
    root = anon.get("/")
    assert root.status_code == 200 and "admin_add_user" not in root.text and len(root.text) < 20_000


def test_the_page_setup_holds_no_server_path_from_the_data(app):
    """The Train tab's list of exported files is filled at load for admins, not built into the page."""
    base_url, admin, password, ctx, tmp = app
    ann = http_login(base_url, "ann", "ann-pass-123")
    for path in ("/", "/config"):
        body = ann.get(path).text
        assert "secret-export-7b" not in body and str(tmp) not in body, path
    adm = http_login(base_url, admin, password)
    assert "secret-export-7b" not in adm.get("/config").text
    event, data = call_api(adm, "admin_add_user", ["ok-user", "ok-pass-123", "annotator"])
    assert event == "complete"  # named endpoints stay callable once logged in


def _upload(client, path: Path) -> dict:
    with open(path, "rb") as fh:
        up = client.post("/gradio_api/upload", files=[("files", (path.name, fh))]).json()[0]
    return {"path": up, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def _unescaped(payload) -> list[str]:
    text = json.dumps(payload)
    return [t for t in ("<a ", "<img", "<style") if t in text]


def test_pop_ups_escape_user_and_file_text(app, tmp_path, caplog, capfd):
    base_url, admin, password, ctx, _ = app
    adm = http_login(base_url, admin, password)
    caplog.set_level(logging.WARNING, logger="wizardlab.ui")
    event, data = call_api(adm, "admin_add_user", [LINK, "long-enough-pw", "annotator"])
    assert event == "error" and "&lt;a href" in json.dumps(data) and not _unescaped(data), data
    event, data = call_api(adm, "admin_set_password", [IMAGE, "long-enough-pw"])
    assert event == "error" and not _unescaped(data), data
    outputs, questions = tmp_path / "answer_m.jsonl", tmp_path / "question.jsonl"
    outputs.write_text(json.dumps({"question_id": LINK, "model_id": "m", "text": "o"}) + "\n")
    questions.write_text(json.dumps({"question_id": 1, "text": "q?", "category": "generic"}) + "\n")
    event, data = call_api(adm, "eval_import", [[_upload(adm, outputs)], _upload(adm, questions), "", ""])
    assert event == "error" and "&lt;a href" in json.dumps(data) and not _unescaped(data), data
    ann = http_login(base_url, "ann", "ann-pass-123")
    event, data = call_api(ann, "admin_add_user", [IMAGE, "long-enough-pw", "admin"])
    assert event == "error" and "Only admins" in json.dumps(data)
    # expected errors: one log line each, no traceback
    lines = [r.getMessage() for r in caplog.records if r.name == "wizardlab.ui"]
    assert len(lines) >= 4 and all("\n" not in line for line in lines), lines
    assert "Traceback" not in capfd.readouterr().err


def test_every_pop_up_goes_through_the_one_helper():
    """gr.Error / gr.Warning / gr.Info are built only in eval_ui/context.py (escaped there)."""
    offenders = []
    for path in sorted((REPO / "eval_ui").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"gr\.(Error|Warning|Info)\(", line) and path.name != "context.py":
                offenders.append(f"{path.name}:{n}")
    assert not offenders


SECRET_WORDS = ("secret-model-omega", "Secret Campaign Zeta", "hidden-admin2", "Confidential seed run")


def _queue(client, fn_index: int, data: list, session: str) -> tuple[bool, object]:
    r = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                     "event_data": None, "trigger_id": None})
    if r.status_code != 200:
        return False, r.text
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg.get("success", False), msg.get("output")
    return False, None


def _silent(text: str) -> bool:
    """An answer made only of no-op updates (a poll that stays quiet for non-admins)."""
    return '"value"' not in text and '"choices"' not in text and '"headers"' not in text


def test_every_backend_function_refuses_an_annotator(app, tmp_path):
    """Every function the app registers (named or not, 'private' ones too: they are reachable by
    fn_index), called with an annotator's cookie and empty inputs: nothing changes in the store and
    no admin data comes back. The Judge tab's own endpoints are the annotator's and are left out."""
    base_url, _, _, ctx, _ = app
    from wizardlab import evaluation as ev

    store = ctx.store()
    make_user(ctx, "hidden-admin2", "hidden-pass-123", "admin")
    rows = [{"prompt_id": i, "prompt": f"q{i}", "model": m, "output": f"{m} {i}"}
            for m in ("secret-model-omega", "other-model") for i in range(3)]
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(store, path, testset="sec-ts")
    ev.create_campaign(store, "Secret Campaign Zeta", [s["id"] for s in sets], k=1)
    tables = [r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    before = {t: store.scalar(f"SELECT COUNT(*) FROM [{t}]") for t in tables}
    ann = http_login(base_url, "ann", "ann-pass-123")
    fns = [(i, fn) for i, fn in ctx._demo.fns.items() if fn.fn is not None
           and not str(fn.api_name or "").startswith("judge_")]
    assert len(fns) > 100
    answers = []
    for i, fn in fns:
        ok, out = _queue(ann, i, [None] * len(fn.inputs), f"sweep-{i}")
        answers.append((fn.api_name if fn.api_visibility != "private" else None, ok, json.dumps(out, default=str)))
    after = {t: store.scalar(f"SELECT COUNT(*) FROM [{t}]") for t in tables}
    assert after == before
    leaks = [(name, w) for name, _, text in answers for w in SECRET_WORDS if w in text]
    assert not leaks, leaks[:5]
    named = [(name, ok, text[:120]) for name, ok, text in answers
             if name and not ("Only admins" in text or not ok or _silent(text))]
    assert not named, named[:5]  # every named admin endpoint refused ("Only admins") or answered nothing


def test_unexpected_errors_keep_their_traceback():
    """Only a UserError becomes a quiet one-line pop-up; a bug still raises (Gradio logs its traceback)."""
    from eval_ui.context import ui_errors
    from wizardlab.errors import UserError

    def bug():
        raise RuntimeError("a real bug")

    def expected():
        raise UserError("<b>bad</b> input")

    with pytest.raises(RuntimeError, match="a real bug"):
        ui_errors(bug)()
    import gradio as gr

    with pytest.raises(gr.Error) as err:
        ui_errors(expected)()
    assert err.value.message == "&lt;b&gt;bad&lt;/b&gt; input" and err.value.print_exception is False
