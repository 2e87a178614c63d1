"""Experiments tab through the real app: admins only (checked on the server), recipes with live
counts over HTTP, and, in Chromium, the first-run tour from its button to the first judged item
(on the fake endpoint and tiny-llama, so it takes a minute, not fifteen), then the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval_ui import experiments as tab
from tests.fakellm import FakeLLM, evol_responder
from tests.uihelpers import (browser, call_api, choose_option, http_login, login, make_forest, make_user, start_app,
                             stop_app)
from wizardlab import tour

SHOTS = os.environ.get("WIZARDLAB_SCREENSHOTS")  # set to docs/screenshots to refresh the README's picture


def _recipe_values(name, **kw):
    values = {"runs": "", "max_round": "", "operations": [], "overrides": True, "drop": False, "seeds_only": False,
              "sample": "", "seed": 0, **kw}
    return [name, values["runs"], values["max_round"], values["operations"], values["overrides"], values["drop"],
            values["seeds_only"], values["sample"], values["seed"]]


def test_recipes_over_http_and_annotators_refused(tmp_path):
    base_url, admin, password, ctx = start_app(tmp_path)
    try:
        seeds = [{"instruction": f"Seed {i}", "input": "", "response": f"answer {i}"} for i in range(3)]
        make_forest(ctx.store(), seeds, [[{"status": "kept", "instruction": f"R1 {i}", "response": "ok"}
                                          for i in range(3)]])
        make_user(ctx, "ann", "ann-pass-123", "annotator")
        ann = http_login(base_url, "ann", "ann-pass-123")
        for api, data in (("recipe_save", _recipe_values("x")), ("tour_start", []),
                          ("experiment_cancel", [1]), ("experiment_report_html", [1]), ("recipe_export", ["x"]),
                          ("recipe_delete", ["x"]), ("experiment_report_data", [1])):
            event, payload = call_api(ann, api, data)
            assert event == "error" and "Only admins" in str(payload), (api, payload)
        assert ctx.store().list_recipes() == [] and ctx.store().list_runs("tour") == []
        client = http_login(base_url, admin, password)
        event, payload = call_api(client, "recipe_save", _recipe_values("r1", max_round="1"))
        assert event == "complete", payload
        assert "saved recipe" in payload[0] and payload[1]["data"][0][:2] == ["r1", 6]
        event, payload = call_api(client, "recipe_save", _recipe_values("r1"))
        assert event == "error" and "already exists" in str(payload)
        event, payload = call_api(client, "recipe_save", _recipe_values("r2", sample="ten"))
        assert event == "error" and "sample N: give a whole number" in str(payload)
        event, payload = call_api(client, "recipe_compare", [["r1"]])
        assert event == "complete" and payload[0]["data"][0] == ["rows", 6], payload
        event, payload = call_api(client, "recipe_export", ["r1"])
        assert event == "complete", payload
        assert ctx.store().recipe_exports()[0]["n_rows"] == 6
        event, payload = call_api(client, "recipe_delete", ["r1"])
        assert event == "complete" and ctx.store().list_recipes() == [], payload
    finally:
        stop_app(ctx)


def test_tour_from_the_button_to_the_first_judged_item(tmp_path, monkeypatch):
    with FakeLLM(evol_responder) as fake, browser() as b:
        monkeypatch.setattr(tab, "TOUR_OPTIONS", tour.TourOptions("tiny-llama", fake.base_url, "fake"))
        base_url, admin, password, ctx = start_app(tmp_path)
        try:
            page = b.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(60_000)
            login(page, base_url, admin, password)
            page.locator(".wl-tour-hint").wait_for()
            page.get_by_role("tab", name="Experiments").click()
            page.locator("#wl-tour-start").click()
            page.locator("#wl-tour-status", has_text="Campaign #").wait_for(timeout=420_000)
            assert "✗" not in page.locator("#wl-tour-status").inner_text()
            exp = ctx.store().experiment(tour.NAME)
            if ctx.store().campaign(exp["campaign_id"])["status"] == "review":
                # tiny-llama writes random words, now and then a model's name ("claude", "bard": about one tour
                # in five): the identity check holds the campaign, the panel says so, and the lead keeps each hit
                assert "is held" in page.locator("#wl-tour-status").inner_text()
                client = http_login(base_url, admin, password)
                for hit in ctx.store().identity_hits(exp["campaign_id"], open_only=True):
                    event, payload = call_api(client, "eval_resolve_leak", [exp["campaign_id"], hit["id"], "keep", ""])
                    assert event == "complete", payload
            assert ctx.store().campaign(exp["campaign_id"])["status"] == "open"
            items = ctx.store().campaign_items(exp["campaign_id"])
            assert len(items) == 10 and {i["model_a"] for i in items} | {i["model_b"] for i in items} == {
                s["model"] for s in tab.experiments.arm_output_sets(ctx.store(), exp).values()}
            page.get_by_role("tab", name="Judge").click()
            choose_option(page, "wl-judge-campaign", f"Campaign {exp['campaign_id']}")  # admins choose the campaign
            page.locator("#wl-judge-r1", has_text="Response 1").wait_for()
            page.locator("body").press("1")
            page.locator("#wl-judge-progress", has_text="1 done of 10").wait_for()
            assert len(ctx.store().campaign_judgments(exp["campaign_id"])) == 1
            if SHOTS:
                _report_screenshot(page, ctx, exp, Path(SHOTS))
        finally:
            stop_app(ctx)


def test_tour_panel_says_when_its_campaign_is_held_for_identity_leaks(tmp_path):
    """A campaign whose answers name a model is held (not in the Judge tab): the tour's panel and the
    experiment's head line say so instead of "open: judge it", and say "open" once the hit is kept."""
    from wizardlab import evaluation as ev
    from wizardlab.store import Store

    store = Store(str(tmp_path / "app.db"))
    rows = [{"prompt_id": i, "prompt": f"Question {i}?", "model": m,
             "output": "palm claude ferry" if (m, i) == ("arm-b", 1) else f"Reply {i} by {m}."}
            for m in ("arm-a", "arm-b") for i in range(3)]
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cid = ev.create_campaign(store, "experiment tour", [s["id"] for s in ev.import_outputs(store, path,
                                                                                           testset="t")], k=1)
    assert store.campaign(cid)["status"] == "review"
    note = tab.tour_campaign_note(store, cid)
    assert f"Campaign #{cid} is held: 1 answer names a model" in note and "is open" not in note and "palm" in note
    view = {"status": "done", "name": "tour", "campaign_id": cid, "error": None, "arms": []}
    assert "held: identity leaks to resolve" in tab.status_html(view, "review")
    for hit in store.identity_hits(cid, open_only=True):
        ev.resolve_identity(store, cid, hit["id"], "keep", by="admin")
    assert f"Campaign #{cid} is open: judge it in the Judge tab" in tab.tour_campaign_note(store, cid)
    assert "judge it in the Judge tab" in tab.status_html(view, "open")


def _report_screenshot(page, ctx, exp, out: Path) -> None:
    """Judge the rest (scripted: the evolved arm wins 7 of 9), then shoot the tab with its report."""
    from wizardlab import evaluation
    from wizardlab.evaluation.annotate import a_on_left

    store = ctx.store()
    campaign = store.campaign(exp["campaign_id"])
    evolved = tab.experiments.arm_output_sets(store, exp)["seeds + evolved"]["model"]
    for n, item in enumerate(store.campaign_items(exp["campaign_id"])[1:]):  # items come in id order
        view = evaluation.next_item(store, campaign, "admin")
        wins_a = (item["model_a"] == evolved) == (n % 5 != 4)
        left_a = a_on_left(campaign["id"], campaign["config"].get("seed", 0), item["item_id"], "admin")
        evaluation.submit(store, campaign, "admin", view["assignment_id"], "1" if wins_a == left_a else "2",
                          request_id=f"shot{n}")
    page.get_by_role("tab", name="Experiments").click()
    page.locator("#wl-exp-report", has_text="sign test").wait_for(timeout=60_000)
    page.wait_for_timeout(800)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "experiments.png"), full_page=True)
