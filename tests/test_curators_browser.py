"""A curator in headless Chromium: sees Lineage, Data and Judge only; overrides a node with a reason
(the audit log names them); works a review queue from the keyboard; the Data tab is read-only.

Screenshots go to a temporary directory; `WIZARDLAB_SHOTS=docs/screenshots` keeps them
(review_queue.png, review_report.png)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.uihelpers import browser, login, make_forest, make_user, start_app, stop_app
from wizardlab import review

SEEDS = ["Give three tips for staying healthy.", "Explain why the sky is blue.", "Write a haiku about autumn.",
         "Summarise the plot of Hamlet in two sentences."]
EVOLVED = ["Give three tips for staying healthy, each backed by a study published after 2015.",
           "Explain why the sky is blue.",
           "Write a haiku about autumn <b>in Japanese</b>, then translate it into English.",
           "Summarise the plot of Hamlet in two sentences, without naming any character."]
RESPONSES = ["1. Walk 8,000 steps a day (Saint-Maurice et al., 2020)...", "Rayleigh scattering: shorter wavelengths...",
             "Sorry, I cannot write poems.", "A prince avenges his father's murder; nearly everyone dies."]
RULES = [["no_information_gain"], ["no_information_gain"], ["sorry_short_response"], ["no_information_gain"]]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base_url, admin, password, ctx = start_app(tmp_path_factory.mktemp("curator-ui"))
    make_user(ctx, "cora", "cora-pass-123", "curator")
    store = ctx.store()
    run = make_forest(store, [{"instruction": s, "input": "", "response": "r"} for s in SEEDS],
                      [[{"status": "eliminated", "instruction": e, "response": r, "rules": rules,
                         "operation": "add_constraints"} for e, r, rules in zip(EVOLVED, RESPONSES, RULES)]])
    task = review.create_task(store, run, "round 1 eliminations", {"round": 1}, k=2, user=admin)
    yield base_url, ctx, run, task
    stop_app(ctx)


def shots_dir(tmp_path) -> Path:
    out = Path(os.environ.get("WIZARDLAB_SHOTS", str(tmp_path)))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_curator_sees_lineage_data_judge_overrides_and_reviews_from_the_keyboard(app, tmp_path):
    base_url, ctx, run, task = app
    store = ctx.store()
    nodes = [n for n in store.iter_nodes(run) if n["round"] == 1]
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        login(page, base_url, "cora", "cora-pass-123")
        page.locator("#wl-lin-find").wait_for()  # curators start on Lineage
        for name in ("Lineage", "Data", "Judge"):
            assert page.get_by_role("tab", name=name, exact=True).is_visible(), name
        for name in ("Evolve", "Train", "Evaluate", "Admin", "Review tasks"):
            assert page.get_by_role("tab", name=name, exact=True).count() == 0, name

        node = nodes[0]
        page.locator("#wl-lin-root input").fill(str(node["root_id"]))
        page.locator("#wl-lin-show").click()
        page.locator(f"#wl-tree #node-{node['id']}").wait_for()
        page.locator("#wl-ov-node input").fill(str(node["id"]))
        page.locator("#wl-ov-reason textarea").fill("adds a real constraint: keep")
        page.locator("#wl-ov-apply").click()
        page.locator(f"#wl-tree #node-{node['id']} .wl-audit", has_text="cora").wait_for()
        [override] = store.node_overrides(node["id"])
        assert (override["action"], override["user"], override["reason"]) == ("restore", "cora",
                                                                               "adds a real constraint: keep")

        page.get_by_role("tab", name="Review queue").click()
        page.locator("#wl-rev-task input").click()
        page.get_by_role("option", name=f"#{task['id']} · round 1 eliminations", exact=False).click()
        page.locator("#wl-rev-item", has_text="Parent instruction").wait_for()
        page.locator("#wl-rev-item", has_text=SEEDS[0]).wait_for()
        page.keyboard.press("k")
        page.locator("#wl-rev-progress", has_text="1 answered of 4").wait_for()
        page.keyboard.press("e")
        page.locator("#wl-rev-progress", has_text="2 answered of 4").wait_for()
        page.keyboard.press("u")  # undo reopens node 2
        page.locator("#wl-rev-progress", has_text="1 answered of 4").wait_for()
        page.keyboard.press("k")
        page.locator("#wl-rev-progress", has_text="2 answered of 4").wait_for()
        page.locator("#wl-rev-item", has_text="in Japanese").wait_for()  # literal text, not HTML
        assert page.locator("#wl-rev-item b").count() == 1  # the operation; the evolved <b> is text
        page.screenshot(path=str(shots_dir(tmp_path) / "review_queue.png"), full_page=True)
        verdicts = {v["node_id"]: v["verdicts"] for v in store.review_verdicts(task["id"])}
        assert [verdicts[n["id"]] for n in nodes[:2]] == [{"cora": "keep"}, {"cora": "keep"}]

        page.get_by_role("tab", name="Data", exact=True).click()
        page.locator("#wl-data-summary", has_text="round").first.wait_for()
        assert not page.locator("#wl-score").is_visible() and not page.locator("#wl-build-map").is_visible()
        assert page.locator(".toast-body").all_inner_texts() == []


def test_admin_reads_the_review_report_and_applies_it(app, tmp_path):
    base_url, ctx, run, task = app
    store = ctx.store()
    nodes = [n for n in store.iter_nodes(run) if n["round"] == 1]
    for node, (a, b) in zip(nodes, [("keep", "keep"), ("keep", "eliminate"), ("eliminate", "eliminate"),
                                    ("keep", "keep")]):
        for who, verdict in (("cora", a), ("ben", b)):
            if who not in next(v["verdicts"] for v in store.review_verdicts(task["id"]) if v["node_id"] == node["id"]):
                review.answer_node(store, task["id"], who, node["id"], verdict)
    from tests.uihelpers import ADMIN_PASSWORD

    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(30_000)
        login(page, base_url, "admin", ADMIN_PASSWORD)
        page.get_by_role("tab", name="Lineage", exact=True).click()
        page.get_by_role("tab", name="Review tasks").click()
        page.locator("#wl-rt-table [data-testid='cell-0-0']").wait_for()
        page.locator("#wl-rt-id input").fill(str(task["id"]))
        page.locator("#wl-rt-report").click()
        page.locator("#wl-rev-report", has_text="Fleiss").wait_for()
        page.screenshot(path=str(shots_dir(tmp_path) / "review_report.png"), full_page=True)
        text = page.locator("#wl-rev-report").inner_text()
        page.locator("#wl-rt-apply").click()
        page.locator("#wl-rt-msg", has_text="wrote").wait_for()
    rep = review.report(store, task["id"])
    assert f"{rep['agreement']['fleiss_kappa']:.3f}" in text and "no_information_gain" in text
    assert store.review_task(task["id"])["status"] == "applied"
    # node 0 was restored by cora by hand already; node 3 (keep, keep) gets the only new override
    assert [len(store.node_overrides(n["id"])) for n in nodes] == [1, 0, 0, 1]
