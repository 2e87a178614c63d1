"""Rater quality (issue 14): gold items, repeats with the sides swapped, rater cards, pausing,
excluding flagged raters, identity leaks before blinding and routing to the widest interval.

The simulation: alpha's answer is truly better on 80% of 30 prompts; three careful raters read
the answers (on topic, complete, correct; a stable 10% of their real verdicts go the other way);
two careless ones click fast, one at random and one always on the left."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from wizardlab import evaluation as ev
from wizardlab.errors import UserError
from wizardlab.evaluation import annotate, report

N = 30
TRUTH = 0.8  # share of prompts where alpha's answer is the better one


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _answer(i: int, good: bool) -> str:
    head = f"The correct answer to question {i} is {i * 7}." if good else f"A poor answer to question {i}: {i}."
    return head + " " + " ".join(f"step{j}" for j in range(18)) + " END."


def _sets(store, tmp_path, n=N, leak: str | None = None):
    rows = []
    for i in range(1, n + 1):
        alpha_good = i % 5 != 0
        for m, good in (("alpha", alpha_good), ("beta", not alpha_good)):
            text = _answer(i, good) + (f" {leak}" if leak and m == "beta" and i == 2 else "")
            rows.append({"prompt_id": i, "prompt": f"question {i}", "model": m, "output": text})
    return [s["id"] for s in ev.import_outputs(store, _write(tmp_path / "out.jsonl", rows), testset="sim")]


def _careful_pick(name: str, item: dict) -> str:
    """On topic > complete > correct; a stable 10% of real verdicts (same rater, same prompt) flipped."""
    q = item["prompt"]

    def score(text):
        return 4 * (f"question {q.split()[-1]} " in text or f"question {q.split()[-1]}:" in text) \
            + 2 * text.endswith("END.") + ("correct" in text)
    s1, s2 = score(item["response_1"]), score(item["response_2"])
    pick = "1" if s1 > s2 else "2"
    obvious = min(s1, s2) < 6  # a degraded side: a careful rater never misses it
    if not obvious and hashlib.sha256(f"{name}:{q}".encode()).digest()[0] < 26:
        pick = "2" if pick == "1" else "1"
    return pick


def _simulate(store, campaign, raters: dict, seconds: dict, rounds=400):
    """Rounds of 30 seconds: each rater judges as many items as their pace allows."""
    rng = random.Random(1)
    for _ in range(rounds):
        busy = False
        for name, policy in [(n, p) for n, p in raters.items() for _ in range(max(1, round(30 / seconds[n])))]:
            item = ev.next_item(store, campaign, name)
            if item is None:
                continue
            busy = True
            choice = {"careful": lambda: _careful_pick(name, item), "random": lambda: rng.choice("12"),
                      "left": lambda: "1"}[policy]()
            ev.submit(store, campaign, name, item["assignment_id"], choice, request_id=f"{name}-{item['assignment_id']}",
                      seconds=seconds[name])
        if not busy:
            return


@pytest.fixture
def simulated(store, tmp_path):
    sets = _sets(store, tmp_path)
    cid = ev.create_campaign(store, "sim", sets, k=3, gold_share=0.2, repeat_share=0.2, seed=5)
    campaign = store.campaign(cid)
    raters = {"lazy": "random", "lefty": "left", "ann": "careful", "bob": "careful", "cy": "careful"}
    seconds = {"lazy": 6.0, "lefty": 2.5, "ann": 21.0, "bob": 15.0, "cy": 30.0}
    _simulate(store, campaign, raters, seconds)
    return store, campaign


def test_careless_raters_are_caught_paused_and_excluding_them_restores_the_truth(simulated):
    store, campaign = simulated
    rep = report.build_report(store, campaign["id"], n_boot=100)
    cards = {c["annotator"]: c for c in rep["raters"]["cards"]}
    for name in ("lazy", "lefty"):
        c = cards[name]
        assert c["paused"] and "failed_gold" in c["flags"], c
        assert c["gold_accuracy"] < 0.7 and c["repeat_n"] >= 1, c
    assert "inconsistent" in cards["lefty"]["flags"] and cards["lefty"]["flip_rate"] == 1.0
    assert "too_fast" in cards["lefty"]["flags"]
    assert cards["lefty"]["left_rate"] == 1.0 and "left_side" in cards["lefty"]["flags"]
    for name in ("ann", "bob", "cy"):
        c = cards[name]
        assert c["flags"] == [] and c["gold_accuracy"] == 1.0 and c["flip_rate"] == 0.0, c
        assert c["gold_n"] >= 4 and c["repeat_n"] >= 1
    assert sorted(rep["raters"]["flagged"]) == ["lazy", "lefty"] == sorted(rep["raters"]["paused"])
    # paused raters get nothing more, their open items went back to the pool, every real item reached k
    assert ev.next_item(store, campaign, "lazy") is None and annotate.is_paused(store, campaign, "lazy")
    assert not any(p["open"] for p in store.campaign_progress(campaign["id"]))
    effect = rep["raters"]["effect"][0]
    raw, clean = effect["win_rate_all"], effect["win_rate_without_flagged"]
    assert abs(raw - TRUTH) - abs(clean - TRUTH) >= 0.05 and abs(clean - TRUTH) <= 0.05, effect
    excluded = report.build_report(store, campaign["id"], n_boot=100, exclude="flagged")
    assert excluded["raters"]["excluded"] == ["lazy", "lefty"]
    assert excluded["pairs"][0]["win_rate_ties_half"] == clean
    assert {a["annotator"] for a in excluded["annotators"]} == {"ann", "bob", "cy"}
    # gold and repeat items never count: results cover the 30 real items only
    assert rep["pairs"][0]["n"] == N and rep["n_items"] == N
    text = report.render_text(rep)
    assert "Rater cards" in text and "lefty" in text and "failed_gold" in text


def test_gold_and_repeat_items_look_like_any_other_item(store, tmp_path):
    sets = _sets(store, tmp_path)
    cid = ev.create_campaign(store, "blind", sets, k=1, gold_share=0.3, repeat_share=0.3, seed=1)
    campaign = store.campaign(cid)
    items = store.campaign_items(cid, include_attention=True)
    kinds = {k: sum(i["kind"] == k for i in items) for k in ("real", "gold", "repeat")}
    assert kinds == {"real": N, "gold": 9, "repeat": 9}
    assert {i["gold_kind"] for i in items if i["kind"] == "gold"} == {"truncated", "off_topic", "other_answer"}
    real = {i["item_id"] for i in items if i["kind"] == "real"}
    repeated = {i["prompt_key"] for i in items if i["kind"] == "repeat"}
    assert all(store.find_item(cid, key, {"alpha", "beta"})["item_id"] in real for key in repeated)  # imports
    seen, shown = [], {}
    while (item := ev.next_item(store, campaign, "ann")) is not None:
        seen.append(item)
        shown[item["assignment_id"]] = item
        ev.submit(store, campaign, "ann", item["assignment_id"], _careful_pick("ann", item),
                  request_id=str(item["assignment_id"]))
    assert len(seen) == N + 9 + 9
    assert {tuple(sorted(s)) for s in seen} == {("assignment_id", "campaign_id", "progress", "prompt", "response_1",
                                                 "response_2", "status")}
    payload = json.dumps(seen)
    assert "gold" not in payload and "repeat" not in payload and "alpha" not in payload
    # a repeat shows the same two answers with the sides swapped
    by_pair = {}
    for s in seen:
        by_pair.setdefault(frozenset((s["prompt"], s["response_1"], s["response_2"])), []).append(s)
    swapped = [v for v in by_pair.values() if len(v) == 2]
    assert len(swapped) == 9 and all(a["response_1"] == b["response_2"] for a, b in swapped)


def test_identity_leaks_hold_the_campaign_until_resolved(store, tmp_path):
    sets = _sets(store, tmp_path, leak="As an AI language model developed by OpenAI, I hope this helps.")
    cid = ev.create_campaign(store, "leaky", sets, k=1)
    campaign = store.campaign(cid)
    assert campaign["status"] == "review" and ev.next_item(store, campaign, "ann") is None
    hits = store.identity_hits(cid)
    assert [(h["match"], h["model"], h["status"]) for h in hits] == [("OpenAI", "beta", "open")]
    with pytest.raises(UserError, match="identity leaks"):
        ev.set_status(store, cid, "open")
    out = ev.resolve_identity(store, cid, hits[0]["id"], "edit", text=_answer(2, True), by="lead")
    assert out == {"status": "edited", "open_left": 0, "campaign_status": "open"}
    item = ev.next_item(store, store.campaign(cid), "ann")
    assert item is not None and "OpenAI" not in json.dumps(item)


def test_routing_sends_raters_to_the_widest_interval(store, tmp_path):
    rows = [{"prompt_id": i, "prompt": f"question {i}", "model": m, "output": _answer(i, m == "a")}
            for m in ("a", "b", "c") for i in range(1, 13)]
    sets = [s["id"] for s in ev.import_outputs(store, _write(tmp_path / "o.jsonl", rows), testset="r")]
    cid = ev.create_campaign(store, "routed", sets, pairs="all", k=3, routing="widest")
    campaign = store.campaign(cid)
    model = {s: store.output_set(s)["model"] for s in sets}
    for n in range(18):
        rank = annotate.routing_rank(store, campaign)
        widest = next(pair for pair, r in rank.items() if r == 0)
        item = ev.next_item(store, campaign, f"r{n % 3}")
        ev.submit(store, campaign, f"r{n % 3}", item["assignment_id"], "1" if n % 4 else "2", request_id=f"x{n}")
        last = store.campaign_judgments(cid)[-1]
        assert (last["model_a"], last["model_b"]) == (model[widest[0]], model[widest[1]]), n
    counts = sorted(p["n"] for p in store.pair_tallies(cid))
    assert sum(counts) == 18 and counts[0] >= 4, counts  # no pair left behind


def _cli(db, *args):
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env={**__import__("os").environ, "WIZARDLAB_DB": str(db)})


def test_cli_leaks_resolve_pause_and_html_report(tmp_path):
    from wizardlab.store import Store

    db = tmp_path / "cli.db"
    store = Store(db)
    sets = _sets(store, tmp_path, leak="I am ChatGPT, a model by OpenAI.")
    store.close()
    out = _cli(db, "campaign", "create", "--name", "c", "--sets", *sets, "--k", "2", "--gold", "0.2",
               "--repeats", "0.1", "--routing", "widest")
    assert out.returncode == 0 and "held for review: 1 answers" in out.stdout, out.stderr
    leaks = json.loads(_cli(db, "campaign", "leaks", "c", "--json").stdout)
    assert [(h["match"], h["status"]) for h in leaks] == [("ChatGPT", "open")]
    assert _cli(db, "campaign", "open", "c").returncode != 0
    out = _cli(db, "campaign", "resolve", "c", leaks[0]["id"], "--drop")
    assert "dropped; 0 open left; campaign is open" in out.stdout, out.stderr
    out = _cli(db, "campaign", "pause", "c", "--annotator", "zed")
    assert out.returncode == 0 and "zed: paused" in out.stdout
    html = tmp_path / "r.html"
    out = _cli(db, "report", "--campaign", "c", "--json", "--exclude-flagged", "--html", html, "--bootstrap", "20")
    rep = json.loads(out.stdout)
    assert rep["options"]["routing"] == "widest" and rep["raters"]["paused"] == ["zed"]
    assert rep["raters"]["excluded"] == ["zed"] and rep["identity_leaks"][0]["status"] == "dropped"
    assert rep["n_items"] == N - 1  # the leaking answer's item was dropped
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "Rater cards" in page and "<script" not in page


def take_rater_screenshot(out_dir: str, port: int = 7821) -> str:
    """docs/screenshots/rater_cards.png: the Report's rater cards after the simulated campaign."""
    import re
    import tempfile
    from pathlib import Path

    from tests.uihelpers import browser, login, start_app, stop_app

    tmp = Path(tempfile.mkdtemp())
    base_url, admin, password, ctx = start_app(tmp, port=port)
    store = ctx.store()
    sets = _sets(store, tmp)
    cid = ev.create_campaign(store, "alpha vs beta, with gold and repeats", sets, k=3, gold_share=0.2,
                             repeat_share=0.2, seed=5)
    _simulate(store, store.campaign(cid), {"lazy": "random", "lefty": "left", "ann": "careful", "bob": "careful",
                                           "cy": "careful"},
              {"lazy": 6.0, "lefty": 2.5, "ann": 21.0, "bob": 15.0, "cy": 30.0})
    out = Path(out_dir) / "rater_cards.png"
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1300, "height": 1000})
            login(page, base_url, admin, password)
            page.get_by_role("tab", name="Evaluate").click()
            page.get_by_role("tab", name="Report").click()
            page.locator("#wl-report-campaign input").click()
            page.get_by_role("option", name=re.compile("with gold and repeats")).first.click()
            page.locator("#wl-report .wl-raters").wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            page.locator("#wl-report .wl-raters").screenshot(path=str(out))
    finally:
        stop_app(ctx)
    return str(out)


def take_leaks_screenshot(out_dir: str, port: int = 7822) -> str:
    """docs/screenshots/campaign_quality.png: the campaign form's rater-quality options and a new
    campaign held for an identity leak under Manage a campaign."""
    import re
    import tempfile
    from pathlib import Path

    from tests.uihelpers import browser, login, start_app, stop_app

    tmp = Path(tempfile.mkdtemp())
    base_url, admin, password, ctx = start_app(tmp, port=port)
    store = ctx.store()
    sets = _sets(store, tmp, leak="As an AI language model developed by OpenAI, I hope this helps.")
    ev.create_campaign(store, "alpha vs beta (held)", sets, k=3, gold_share=0.1, repeat_share=0.1)
    out = Path(out_dir) / "campaign_quality.png"
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1300, "height": 1000})
            login(page, base_url, admin, password)
            page.get_by_role("tab", name="Evaluate").click()
            page.get_by_role("tab", name="Campaigns").click()
            page.get_by_text("Rater quality: gold and repeated items, routing").click()
            page.locator("#wl-manage-campaign input").click()
            page.get_by_role("option", name=re.compile("held")).first.click()
            page.locator("#wl-camp-status table").first.wait_for(timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out), full_page=True)
    finally:
        stop_app(ctx)
    return str(out)


if __name__ == "__main__":
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"
    print(take_rater_screenshot(target))
    print(take_leaks_screenshot(target))
