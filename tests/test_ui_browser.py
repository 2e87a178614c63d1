"""The app in a real headless Chromium: a batch against the fake LLM, lineage, override, XSS, detached jobs."""

from __future__ import annotations

import time

import pytest

from tests.fakellm import FakeLLM
from tests.uihelpers import UI_TIMEOUT_MS, browser, login, make_forest, make_user, start_app, stop_app, upload_file
from wizardlab import jobs

HOSTILE = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    "[click me](javascript:window.__pwned='link') and <a href=\"javascript:window.__pwned='a'\">x</a>",
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with FakeLLM() as fake:
        base_url, admin, password, ctx = start_app(tmp_path_factory.mktemp("ui"), base_url=fake.base_url,
                                                   model="fake-model", concurrency=4)
        make_user(ctx, "ann", "ann-pass-123", "annotator")
        yield base_url, admin, password, ctx, fake
        for run in ctx.store().list_runs():
            jobs.kill(ctx.store(), run["id"])
        stop_app(ctx)


def _page(b):
    page = b.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def _start_batch(page, rounds: int, limit: int, seed: int = 0) -> None:
    page.locator("#wl-rounds input").fill(str(rounds))
    page.locator("#wl-limit input").fill(str(limit))
    page.get_by_label("Random seed").fill(str(seed))
    page.locator("#wl-start").click()


def _wait_run_done(page):
    page.locator("#wl-progress .wl-run-head", has_text="done").wait_for(timeout=90_000)


def test_batch_lineage_and_override_in_the_browser(app):
    base_url, admin, password, ctx, _ = app
    store = ctx.store()
    with browser() as b:
        page = _page(b)
        login(page, base_url, admin, password)
        _start_batch(page, rounds=2, limit=3)
        _wait_run_done(page)
        run_id = store.list_runs("evolve")[0]["id"]
        assert store.get_run(run_id)["status"] == "done" and store.count_nodes(run_id, 2) == 3

        page.get_by_role("tab", name="Lineage").click()
        page.locator("#wl-lin-find").click()
        page.locator("#wl-lin-roots [data-testid='cell-0-0']").click()
        page.locator("#wl-tree .wl-tree").wait_for()
        root_id = int(page.locator("#wl-tree .wl-tree").get_attribute("data-root"))
        node = next(n for n in store.tree_nodes(root_id) if n["round"] == 1)
        assert page.locator(f"#wl-tree #node-{node['id']}").count() == 1

        page.locator("#wl-ov-node input").fill(str(node["id"]))
        page.locator("#wl-ov-action").get_by_text("eliminate").click()
        page.locator("#wl-ov-reason textarea").fill("too vague after review")
        page.locator("#wl-ov-apply").click()
        page.locator(f"#wl-tree #node-{node['id']} .wl-audit").wait_for()
        [override] = store.node_overrides(node["id"])
        assert (override["action"], override["user"], override["reason"]) == ("eliminate", admin,
                                                                               "too vague after review")
        assert store.get_node(node["id"])["effective_status"] == "eliminated"
        row = next(i for i in range(3) if page.locator(f"#wl-lin-roots [data-testid='cell-{i}-0']").inner_text()
                   .strip() == str(root_id))
        page.locator(f"#wl-lin-roots [data-testid='cell-{row}-7']", has_text="1").wait_for()  # Overrides column

        page.locator("#wl-undo-id input").fill(str(override["id"]))
        page.locator("#wl-undo").click()
        page.locator(f"#wl-tree #node-{node['id']} .wl-undone").wait_for()
        assert store.node_overrides(node["id"])[0]["undone_by"] == admin
        assert store.get_node(node["id"])["effective_status"] == node["effective_status"]


def test_annotator_sees_only_judge(app):
    base_url, _, _, _, _ = app
    with browser() as b:
        page = _page(b)
        login(page, base_url, "ann", "ann-pass-123")
        page.get_by_role("tab", name="Judge").wait_for()
        for name in ("Evolve", "Lineage", "Admin"):
            assert page.get_by_role("tab", name=name).count() == 0
        page.wait_for_timeout(3000)  # hidden tabs' load and timer callbacks stay silent for annotators
        assert page.locator(".toast-body").all_inner_texts() == []


def test_hostile_text_is_shown_literally_and_runs_nothing(app):
    base_url, admin, password, ctx, _ = app
    seeds = [{"instruction": HOSTILE[0], "input": HOSTILE[1], "response": HOSTILE[2]}]
    nodes = [[{"status": "eliminated", "instruction": HOSTILE[1], "response": HOSTILE[0] + HOSTILE[2],
               "rules": ["malformed"]}]]
    run_id = make_forest(ctx.store(), seeds, nodes)
    root_id = ctx.store().find_roots(run_id, {})[0]["root_id"]
    ctx.store().add_overrides([root_id + 1], "restore", HOSTILE[1], admin)
    with browser() as b:
        page = _page(b)
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(page, base_url, admin, password)
        page.get_by_role("tab", name="Lineage").click()
        page.locator("#wl-lin-text input").fill("pwned")
        page.locator("#wl-lin-find").click()
        page.locator("#wl-lin-roots [data-testid='cell-0-2']").wait_for()
        page.locator("#wl-lin-root input").fill(str(root_id))
        page.locator("#wl-lin-show").click()
        page.locator("#wl-tree .wl-tree").wait_for()
        for summary in page.locator("#wl-tree details summary").all():
            summary.click()
        page.wait_for_timeout(500)
        tree_text = page.locator("#wl-tree").inner_text()
        for hostile in HOSTILE:
            assert hostile in tree_text
        assert HOSTILE[0] in page.locator("#wl-lin-roots [data-testid='cell-0-2']").inner_text()
        assert page.evaluate("window.__pwned") is None and dialogs == []
        assert page.locator("#wl-tree img, #wl-tree script, #wl-tree a, #wl-lin-roots img, #wl-lin-roots a").count() == 0


def test_job_survives_closing_the_browser_and_page_reattaches(app):
    base_url, admin, password, ctx, fake = app
    store = ctx.store()
    fake.latency = lambda: 0.15
    try:
        with browser() as b:
            page = _page(b)
            login(page, base_url, admin, password)
            _start_batch(page, rounds=3, limit=4, seed=7)
            page.locator("#wl-progress .wl-run-head", has_text="running").wait_for()
            run_id = store.list_runs("evolve")[0]["id"]
        time.sleep(1.0)  # the browser that started it is gone
        run = store.get_run(run_id)
        assert run["status"] == "running" and jobs.pid_alive(run["pid"])
        with browser() as b:  # a fresh page re-attaches to the running batch and follows it to the end
            page = _page(b)
            login(page, base_url, admin, password)
            page.locator("#wl-progress .wl-run-head", has_text=f"Run {run_id}").wait_for()
            _wait_run_done(page)
        assert store.get_run(run_id)["status"] == "done" and store.count_nodes(run_id, 3) == 4
    finally:
        fake.latency = None


def test_bad_seed_upload_shows_one_line_error_and_writes_nothing(app, tmp_path):
    base_url, admin, password, ctx, _ = app
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "fine"}\n{"text": "no instruction field"}\n')
    runs_before = len(ctx.store().list_runs())
    with browser() as b:
        page = _page(b)
        login(page, base_url, admin, password)
        page.get_by_text("Upload a seed file").click()
        upload_file(page, "wl-upload", bad)
        page.locator("#wl-start").click()
        toast = page.locator(".toast-body", has_text="seeds.jsonl")
        toast.wait_for(timeout=60_000)
        message = toast.inner_text()
        assert "line 2" in message and "Traceback" not in message
    assert len(ctx.store().list_runs()) == runs_before


def test_cancel_and_resume_a_batch_over_http(app):
    from tests.uihelpers import call_api, http_login

    base_url, admin, password, ctx, fake = app
    store = ctx.store()
    client = http_login(base_url, admin, password)
    fake.latency = lambda: 0.3
    try:
        event, payload = call_api(client, "evolve_start", ["Built-in demo seeds (24)", None, 2, 2, fake.base_url,
                                                           "fake-model", 11, 6, None, None, None, "", "paper"])
        assert event == "complete", payload
        run_id = payload[1]["value"]
        _wait_status(store, run_id, "running")
        time.sleep(1.0)
        assert call_api(client, "evolve_cancel", [run_id])[0] == "complete"
        _wait_status(store, run_id, "cancelled")
        assert store.count_nodes(run_id, 2) < 6 or store.count_nodes(run_id, status="pending") > 0  # stopped midway
        assert call_api(client, "evolve_resume", [run_id])[0] == "complete"
        _wait_status(store, run_id, "done")
        assert store.count_nodes(run_id, 2) == 6 and store.count_nodes(run_id, status="pending") == 0
    finally:
        fake.latency = None


def _wait_status(store, run_id: int, status: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if store.get_run(run_id)["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {status}: {store.get_run(run_id)['status']}")


def test_failed_calls_retry_and_give_up_in_the_evolve_tab(tmp_path):
    """Endpoint down: the batch ends with retryable nodes, shown with both buttons; give up on round 1's, then
    (endpoint back) round 2 runs. WIZARDLAB_SHOTS=docs/screenshots keeps the picture."""
    import os

    from tests.uihelpers import call_api, http_login

    with FakeLLM() as fake:
        fake.down = True
        base_url, admin, password, ctx = start_app(tmp_path, base_url=fake.base_url, model="fake-model",
                                                   concurrency=2, max_retries=0)
        store = ctx.store()
        try:
            with browser() as b:
                page = _page(b)
                login(page, base_url, admin, password)
                _start_batch(page, rounds=2, limit=3)
                page.locator("#wl-failed-calls").wait_for(timeout=60_000)
                run_id = store.list_runs("evolve")[0]["id"]
                assert store.get_run(run_id)["status"] == "failed" and store.count_failed_calls(run_id, 1) == 3
                assert "503" in page.locator("#wl-failed-calls").inner_text()
                settings = page.locator("#wl-progress .wl-run-settings").inner_text()
                assert "rules: paper" in settings and "evolve T=1 top-p=0.95 max 2048" in settings
                page.screenshot(path=os.path.join(os.environ.get("WIZARDLAB_SHOTS", str(tmp_path)),
                                                  "evolve_failed_calls.png"), full_page=True)
                page.locator("#wl-retry-failed").click()  # still down: attempts grow, nothing eliminated
                _wait_attempts(store, run_id, 2)
                assert store.count_nodes(run_id, status="eliminated") == 0
            fake.down = False
            client = http_login(base_url, admin, password)
            assert call_api(client, "evolve_give_up_failed", [run_id])[0] == "complete"
            _wait_status(store, run_id, "done")
            first = [store.get_node(n["id"]) for n in store.failed_calls(run_id)] or [
                n for n in store.iter_nodes(run_id) if n["round"] == 1]
            assert all(n["fail_rules"] == ["malformed"] and "gave up by admin after 2" in n["error"] for n in first)
            assert store.count_nodes(run_id, 2) == 3 and store.count_failed_calls(run_id) == 0
        finally:
            for run in store.list_runs():
                jobs.kill(store, run["id"])
            stop_app(ctx)


def _wait_attempts(store, run_id: int, attempts: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        failed = store.failed_calls(run_id)
        if failed and all(f["attempts"] == attempts for f in failed) and store.get_run(run_id)["status"] == "failed":
            return
        time.sleep(0.3)
    raise AssertionError(f"run {run_id}: attempts never reached {attempts}: {store.failed_calls(run_id)}")


def test_a_refused_account_keeps_what_was_typed_and_the_pop_up_is_plain_text(app):
    """Issue 12.8/12.2: after a failed "Add account" the fields keep their text, unmarked; the
    pop-up shows a hostile user name as text (no link, no image)."""
    base_url, admin, password, ctx, _ = app
    name = '<a href="http://evil.example/">Click to re-login</a><img src="http://evil.example/p.png">'
    with browser() as b:
        page = _page(b)
        login(page, base_url, admin, password)
        page.get_by_role("tab", name="Admin").click()
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password (8+ characters)").fill("long-enough-123")
        page.get_by_role("button", name="Add account").click()
        toast = page.locator(".toast-body").first
        toast.wait_for()
        assert "Click to re-login" in toast.inner_text() and "<a href" in toast.inner_text()
        assert toast.locator("a, img").count() == 0
        assert page.get_by_label("Username").input_value() == name
        assert page.get_by_label("Password (8+ characters)").input_value() == "long-enough-123"
    assert ctx.store().get_user(name) is None


def test_table_headers_do_not_break_inside_words(app):
    """Issue 12.8: with long cells the Train table's headers stayed one column wide per letter."""
    base_url, admin, password, ctx, _ = app
    ctx.store().create_run("train", {"output_dir": "/tmp/x", "model": "meta-llama/Llama-2-7b-hf-with-a-long-name",
                                     "model_dir": "/very/long/path/to/a/checkpoint/of/the/run/20261202-0922/final",
                                     "data": "/data/exports/alpaca-run12-20261202-092200-with-a-long-name.json"},
                           name="long names", status="done")
    with browser() as b:
        page = _page(b)
        login(page, base_url, admin, password)
        page.get_by_role("tab", name="Train").click()
        page.locator("#wl-train-runs th").first.wait_for()
        page.wait_for_timeout(1000)
        lines = page.evaluate("""() => Array.from(document.querySelectorAll('#wl-train-runs th .header.text')).map(
            (e) => [e.innerText, e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight || 20)])""")
    assert lines and all(n < 1.5 for _, n in lines), lines
