"""The Judge tab through real HTTP: 20 annotators at once, idempotent submits, blinding of API payloads.

The real Gradio app runs in-process (tests.uihelpers.start_app); annotators log in through
/login and call the judging endpoints over Gradio's HTTP API with their own session hash
(so the server-side gr.State follows them), from threads, with httpx.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter

import httpx
import pytest

from tests.uihelpers import http_login, make_user, start_app, stop_app
from wizardlab import evaluation as ev

MODELS = ("secret-model-alpha", "secret-model-beta")
N_ANNOTATORS, K, N_PROMPTS = 20, 3, 30


def call(client: httpx.Client, api: str, data: list, session: str) -> tuple[str, object]:
    """POST /gradio_api/call/<api> with a session hash, then read the SSE result."""
    r = client.post(f"/gradio_api/call/{api}", json={"data": data, "session_hash": session})
    if r.status_code != 200:
        return f"http_{r.status_code}", r.text
    event_id = r.json()["event_id"]
    event = None
    with client.stream("GET", f"/gradio_api/call/{api}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.split(":", 1)[1])
    return event or "none", None


def fn_index(client: httpx.Client, api: str) -> int:
    deps = client.get("/config").json()["dependencies"]
    return next(d["id"] for d in deps if d.get("api_name") == api)


def queue_calls(client: httpx.Client, fn: int, datas: list[list], session: str) -> list[tuple[bool, object]]:
    """Join the queue with several events of one session at once (as a browser does), read one stream."""
    ids = []
    for data in datas:
        r = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                         "event_data": None, "trigger_id": None})
        r.raise_for_status()
        ids.append(r.json()["event_id"])
    results = {}
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                results[msg["event_id"]] = (msg.get("success", False), msg.get("output", {}).get("data"))
                if len(results) == len(ids):
                    break
    return [results.get(i, (False, None)) for i in ids]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judging")
    base_url, _, _, ctx = start_app(tmp)
    rows = [{"prompt_id": i, "prompt": f"Question number {i}?", "model": m, "output": f"Answer {i}, version {MODELS.index(m)}."}
            for m in MODELS for i in range(N_PROMPTS)]
    path = tmp / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(ctx.store(), path, testset="toy")
    cid = ev.create_campaign(ctx.store(), "alpha vs beta", [s["id"] for s in sets], k=K)
    for i in range(N_ANNOTATORS):
        make_user(ctx, f"ann{i}", "ann-pass-123")
    yield base_url, ctx, cid
    stop_app(ctx)


def test_twenty_annotators_at_once_every_judgment_stored_once(app):
    base_url, ctx, cid = app
    errors, clicks, payloads = [], Counter(), []
    with httpx.Client(base_url=base_url) as probe:
        probe.cookies = http_login(base_url, "ann0", "ann-pass-123").cookies
        fns = {api: fn_index(probe, api) for api in ("judge_1", "judge_2", "judge_tie")}

    def annotate(i: int):
        try:  # all twenty log in at once from one address: none may be refused
            client = http_login(base_url, f"ann{i}", "ann-pass-123")
        except AssertionError as exc:
            errors.append((i, "login", str(exc)))
            return
        session = f"s{i}"
        try:
            event, data = call(client, "judge_start", [cid], session)
            while event == "complete" and "Response 1" in data[1]:
                payloads.append(json.dumps(data))
                choice = ("judge_1", "judge_2", "judge_tie")[clicks[i] % 3]
                token = data[6]
                if clicks[i] % 4 == 0:  # a double click: the same event sent twice at once
                    results = queue_calls(client, fns[choice], [[None, token, ""], [None, token, ""]], session)
                    ok, data = results[-1]
                    event = "complete" if all(r[0] for r in results) else "error"
                else:
                    event, data = call(client, choice, [None, token, ""], session)
                clicks[i] += 1
            if event != "complete":
                errors.append((i, event, data))
        finally:
            client.close()

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(N_ANNOTATORS)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert not errors
    store = ctx.store()
    rows = store.query("SELECT item_id, annotator, COUNT(*) AS n FROM judgments WHERE campaign_id = ? "
                       "GROUP BY item_id, annotator", (cid,))
    assert all(r["n"] == 1 for r in rows)
    per_item = Counter(r["item_id"] for r in rows)
    assert len(per_item) == N_PROMPTS and set(per_item.values()) == {K}  # every item filled to k, no more
    assert len(rows) == N_PROMPTS * K == sum(clicks.values())
    assert store.scalar("SELECT COUNT(*) FROM assignments WHERE campaign_id = ? AND status = 'open'", (cid,)) == 0
    assert not any(m in p for p in payloads for m in MODELS)  # blind: no model name in any API answer


def test_full_campaign_and_session_without_campaign_and_anonymous(app):
    base_url, ctx, cid = app
    make_user(ctx, "late", "late-pass-123")
    client = http_login(base_url, "late", "late-pass-123")
    event, data = call(client, "judge_start", [cid], "late-session")
    assert event == "complete" and "All done" in data[0]  # items are full at k
    event, _ = call(client, "judge_1", [None, "", ""], "fresh-session")  # no campaign in this session
    assert event == "error"
    anon = httpx.Client(base_url=base_url, timeout=30)
    assert anon.post("/gradio_api/call/judge_next", json={"data": [None]}).status_code == 401


def test_evaluate_endpoints_refuse_annotators_on_the_server(app):
    base_url, ctx, cid = app
    store = ctx.store()
    before = len(store.list_campaigns())
    ann = http_login(base_url, "ann0", "ann-pass-123")
    event, _ = call(ann, "eval_create_campaign", ["sneaky", [1, 2], "one", 1, "", False, False, 0, 0, 0, 0.7,
                                                       "order"], "x1")
    assert event == "error" and len(store.list_campaigns()) == before
    event, payload = call(ann, "eval_report", [cid, False], "x2")
    assert event == "error" and not any(m in json.dumps(payload) for m in MODELS)
    event, _ = call(ann, "eval_llm_judge", [cid, "pairwise"], "x3")
    assert event == "error" and store.list_runs("judge") == []


def test_admin_creates_campaign_reads_report_and_exports(app, tmp_path):
    base_url, ctx, cid = app
    store = ctx.store()
    adm = http_login(base_url, "admin", "admin-pass-123")
    sets = [s["id"] for s in store.list_output_sets()]
    event, data = call(adm, "eval_create_campaign", ["second round", sets, "one", 2, "Be fair.", True, True, 2,
                                                        0, 0, 0.7, "order"],
                       "a1")
    assert event == "complete", data
    new = store.campaign("second round")
    assert new["k"] == 2 and new["allow_both_bad"] == 1 and new["config"]["rationale"]
    assert len(store.campaign_items(new["id"], include_attention=True)) == N_PROMPTS + 2
    for name in ("ann0", "ann1"):
        for n in range(3):
            item = ev.next_item(store, new, name)
            ev.submit(store, new, name, item["assignment_id"], "1", request_id=f"adm-{name}-{n}")
    event, data = call(adm, "eval_report", [new["id"], False], "a2")
    assert event == "complete" and "Cohen" in data[1] and "secret-model-alpha" in data[1]
    event, data = call(adm, "eval_export", [new["id"], False], "a3")
    assert event == "complete"
    names = sorted(f["orig_name"] for f in data[0]["value"])
    assert names == ["report.html", "report.json", "report_csv.zip"]


def test_same_annotator_in_two_tabs_is_told_and_nothing_is_stored_twice(app):
    """Issue 12.4: tab 2 still shows the item judged in tab 1 and clicks the other answer."""
    base_url, ctx, _ = app
    store = ctx.store()
    sets = [s["id"] for s in store.list_output_sets() if s["model"] in MODELS]
    cid = ev.create_campaign(store, "two tabs", sets, k=1, seed=5)
    make_user(ctx, "twotabs", "two-pass-123")
    client = http_login(base_url, "twotabs", "two-pass-123")
    event, one = call(client, "judge_start", [cid], "tab-one")
    assert event == "complete", one
    event, two = call(client, "judge_start", [cid], "tab-two")
    assert event == "complete" and two[0] == one[0] and two[6] == one[6]  # the same item in both tabs
    event, after_one = call(client, "judge_1", [None, one[6], ""], "tab-one")
    assert event == "complete" and "another tab" not in json.dumps(after_one)
    event, after_two = call(client, "judge_2", [None, two[6], ""], "tab-two")
    assert event == "complete" and "Already judged in another tab" in json.dumps(after_two), after_two
    rows = store.query("SELECT label FROM judgments WHERE campaign_id = ? AND annotator = 'twotabs'", (cid,))
    assert len(rows) == 1
    event, again = call(client, "judge_2", [None, two[6], ""], "tab-two")  # a stale repeat: ignored quietly
    assert event == "complete" and len(store.query("SELECT id FROM judgments WHERE campaign_id = ? AND "
                                                   "annotator = 'twotabs'", (cid,))) == 1
    store.set_campaign_status(cid, "closed")


def test_judging_buttons_wait_for_a_campaign(app):
    base_url, ctx, _ = app
    config = httpx.get(f"{base_url}/config", cookies=http_login(base_url, "admin", "admin-pass-123").cookies).json()
    buttons = {c["props"].get("elem_id"): c["props"].get("interactive") for c in config["components"]
               if c.get("type") == "button" and str(c["props"].get("elem_id", "")).startswith("wl-judge-")}
    assert buttons and all(v is False for k, v in buttons.items() if k != "wl-judge-bad"), buttons


def test_gold_and_repeated_items_are_indistinguishable_in_the_api(app):
    """Gold items (one side degraded) and repeats (sides swapped) travel like every other item: the
    same payload shape, no kind, no model name; gold and repeat judgments stay out of the results."""
    base_url, ctx, _ = app
    store = ctx.store()
    sets = [s["id"] for s in store.list_output_sets() if s["model"] in MODELS]
    cid = ev.create_campaign(store, "with checks", sets, k=1, gold_share=0.3, repeat_share=0.3, seed=4)
    kinds = Counter(i["kind"] for i in store.campaign_items(cid, include_attention=True))
    make_user(ctx, "checker", "ann-pass-123")
    client = http_login(base_url, "checker", "ann-pass-123")
    payloads = []
    try:
        event, data = call(client, "judge_start", [cid], "chk")
        while event == "complete" and "Response 1" in data[1]:
            payloads.append(data)
            n = re.search(r"Question number (\d+)", data[0]).group(1)  # a careful rater: the on-topic answer
            event, data = call(client, "judge_1" if f"Answer {n}," in data[1] else "judge_2", [None, data[6], ""],
                               "chk")
    finally:
        client.close()
    assert len(payloads) == sum(kinds.values()) and kinds["gold"] >= 2 and kinds["repeat"] >= 2
    assert {len(p) for p in payloads[1:]} == {7}  # judge_start adds the page's widgets to the same 7 outputs
    shapes = {tuple(sorted(set(re.findall(r'class="([^"]+)"', json.dumps(p[:7]))))) for p in payloads}
    assert len(shapes) == 1, shapes  # the same markup around every item
    text = json.dumps(payloads)
    assert not any(word in text for word in (*MODELS, "gold", "repeat", "attention", "kind"))
    judged = Counter(r["kind"] for r in store.campaign_judgments(cid))
    assert judged == kinds
    from wizardlab.evaluation import report

    assert report.build_report(store, cid, n_boot=20)["n_judgments"] == kinds["real"]


def test_admin_resolves_an_identity_leak_and_pauses_a_rater_over_http(app):
    base_url, ctx, _ = app
    store = ctx.store()
    rows = [{"prompt_id": i, "prompt": f"Leak question {i}?", "model": m,
             "output": "I am ChatGPT." if (m, i) == ("leaky-b", 1) else f"Reply {i} by {m[-1]}."}
            for m in ("leaky-a", "leaky-b") for i in range(4)]
    path = ctx.data_dir / "leaky.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(store, path, testset="leaky")
    cid = ev.create_campaign(store, "leaky", [s["id"] for s in sets], k=1)
    assert store.campaign(cid)["status"] == "review"
    hit = store.identity_hits(cid)[0]
    adm = http_login(base_url, "admin", "admin-pass-123")
    event, data = call(adm, "eval_resolve_leak", [cid, hit["id"], "keep", ""], "l1")
    assert event == "complete" and "kept; 0 left; the campaign is open" in data[0], data
    event, data = call(adm, "eval_pause_rater", [cid, "ann1"], "l2")
    assert event == "complete" and "ann1 paused" in data[0] and "Paused raters: ann1" in data[1]
    assert ev.next_item(store, store.campaign(cid), "ann1") is None and ev.is_paused(store, store.campaign(cid), "ann1")
    event, data = call(adm, "eval_resume_rater", [cid, "ann1"], "l3")
    assert event == "complete" and ev.next_item(store, store.campaign(cid), "ann1") is not None
