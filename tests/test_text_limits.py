"""Text direction and size (issue 12.7): bidi isolation on every piece of model or user text,
long texts collapsed with a "show all" (tree and judge page), length limits with a clear message."""

from __future__ import annotations

import json
import re

import pytest

from eval_ui import render
from eval_ui.judge import md
from eval_ui.lineage import tree_html
from tests.uihelpers import call_api, http_login, make_forest, make_user, start_app, stop_app
from wizardlab import evaluation as ev
from wizardlab.errors import UserError
from wizardlab.store import Store

RLO = "\u202e"


def _visible_chars(html: str) -> int:
    """Characters drawn before any closed <details> (what the browser lays out at first)."""
    first = html.split("<details", 1)[0]
    return len(re.sub(r"<[^>]+>", "", first))


def test_tree_isolates_direction_and_collapses_a_200_kb_seed(tmp_path):
    store = Store(tmp_path / "w.db")
    big = "word " * 40_000  # 200 KB
    run = make_forest(store, [{"instruction": f"evil {RLO}reversed", "input": "", "response": big},
                              {"instruction": big, "input": "", "response": "r"}],
                      [[{"status": "kept", "instruction": "child", "response": "r"},
                        {"status": "kept", "instruction": "child 2", "response": "r"}]])
    roots = sorted({n["root_id"] for n in store.iter_nodes(run)})
    small, large = tree_html(store, roots[0]), tree_html(store, roots[1])
    texts = re.findall(r'<div class="wl-text"[^>]*>', small + large)
    assert texts and all('dir="auto"' in t for t in texts)
    assert f'dir="auto">evil {RLO}reversed</div>' in small
    assert "show all (200,000 characters)" in large and _visible_chars(large) < 10_000
    assert len(large) < 120_000  # not even "show all" carries all of a huge text


def test_inline_user_text_is_isolated_in_the_audit_log(tmp_path):
    from wizardlab import curation

    store = Store(tmp_path / "w.db")
    run = make_forest(store, [{"instruction": "seed", "input": "", "response": "r"}],
                      [[{"status": "eliminated", "instruction": "e", "response": "r", "rules": ["malformed"]}]])
    node = next(n for n in store.iter_nodes(run) if n["round"] == 1)
    curation.override_node(store, node["id"], "restore", f"because {RLO}sdrawkcab", "admin")
    assert f"<bdi>because {RLO}sdrawkcab</bdi>" in tree_html(store, node["root_id"])


def test_judge_page_isolates_and_collapses_long_answers():
    assert md(f"a {RLO}b").startswith('<div class="wl-md" dir="auto">')
    long = "\n\n".join(f"Paragraph {i} " + "x" * 200 for i in range(1_000))  # ~200 KB
    html = md(long)
    assert "show all (" in html and _visible_chars(html) < 25_000


def test_length_limits_on_rationales_guidelines_and_names(tmp_path):
    store = Store(tmp_path / "w.db")
    rows = [{"prompt_id": i, "prompt": f"q{i}", "model": m, "output": "o"} for m in ("a", "b") for i in range(2)]
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = [s["id"] for s in ev.import_outputs(store, path, testset="ts")]
    with pytest.raises(UserError, match="campaign name: at most 200 characters, got 201"):
        ev.create_campaign(store, "n" * 201, sets)
    with pytest.raises(UserError, match="guidelines: at most 20,000 characters"):
        ev.create_campaign(store, "ok", sets, guidelines="g" * 20_001)
    with pytest.raises(UserError, match="output set name: at most 200"):
        ev.import_outputs(store, path, testset="ts", name="s" * 201, model="a")
    c = store.campaign(ev.create_campaign(store, "ok", sets, k=1))
    item = ev.next_item(store, c, "ann")
    with pytest.raises(UserError, match="at most 2,000 characters; this one has 200,000"):
        ev.submit(store, c, "ann", item["assignment_id"], "1", request_id="r1", rationale="x" * 200_000)
    assert store.scalar("SELECT COUNT(*) FROM judgments") == 0
    ev.submit(store, c, "ann", item["assignment_id"], "1", request_id="r2", rationale="fine")
    assert store.scalar("SELECT COUNT(*) FROM judgments") == 1


def test_a_200k_rationale_over_http_is_refused_with_a_message(tmp_path):
    base_url, _, _, ctx = start_app(tmp_path)
    try:
        store = ctx.store()
        rows = [{"prompt_id": 1, "prompt": "q", "model": m, "output": "o"} for m in ("a", "b")]
        path = tmp_path / "o.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        sets = [s["id"] for s in ev.import_outputs(store, path, testset="ts")]
        cid = ev.create_campaign(store, "r", sets, k=1, rationale=True)
        make_user(ctx, "ann", "ann-pass-123")
        ann = http_login(base_url, "ann", "ann-pass-123")
        session = {"session_hash": "s1"}
        r = ann.post("/gradio_api/call/judge_start", json={"data": [cid], **session})
        event_id = r.json()["event_id"]
        token = None
        with ann.stream("GET", f"/gradio_api/call/judge_start/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and line[5:].strip() not in ("", "null"):
                    token = json.loads(line[5:])[6]
        r = ann.post("/gradio_api/call/judge_1", json={"data": [None, token, "x" * 200_000], **session})
        with ann.stream("GET", f"/gradio_api/call/judge_1/{r.json()['event_id']}") as stream:
            text = "".join(stream.iter_lines())
        assert "at most 2,000 characters" in text
        assert store.scalar("SELECT COUNT(*) FROM judgments") == 0
    finally:
        stop_app(ctx)


def test_diversity_caption_adds_up():
    """Issue 12.8: '15 points (11 embedded now, 0 from the cache)' did not add up: duplicates
    and reference points are points too. The caption now names the distinct texts."""
    import pandas as pd

    from eval_ui.data import map_views
    from wizardlab.analysis.diversity import DiversityMap
    from wizardlab.analysis.embeddings import EmbedReport

    points = pd.DataFrame({"x": [0.0] * 15, "y": [0.0] * 15, "group": ["round 0"] * 15, "round": [0] * 15,
                           "operation": [""] * 15, "status": ["kept"] * 15, "text": ["t"] * 15})
    dmap = DiversityMap(points=points, dispersion=pd.DataFrame({"round": [0], "mean_cosine_distance": [0.1]}),
                        method="umap", embed=EmbedReport(texts=11, cached=0, embedded=11), seconds={})
    caption = map_views(dmap, "round")[1]
    assert "15 points, 11 distinct texts (11 embedded now, 0 from the cache)" in caption
