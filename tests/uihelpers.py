"""Helpers for UI tests: the real Gradio app on a free port, accounts, HTTP API calls, Chromium.

    base_url, admin, password, ctx = start_app(tmp_path)   # real server, real SQLite file
    make_user(ctx, "ann", "secret-pw", "annotator")
    client = http_login(base_url, "ann", "secret-pw")       # httpx client with the login cookie
    event, data = call_api(client, "admin_add_user", ["x", "pw123456", "annotator"])
    with browser() as b: page = b.new_page(); login(page, base_url, admin, password)
    stop_app(ctx)

`browser()` uses Debian's /usr/bin/chromium through Playwright and skips the test when it
is missing. Nothing here is a mock: the server, the database and the browser are real.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("WIZARDLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ADMIN_PASSWORD = "admin-pass-123"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp_path: Path, **settings):
    """Start the real app in this process; returns (base_url, admin_user, admin_password, ctx)."""
    from eval_ui.app import build_app, launch
    from eval_ui.context import AppContext
    from wizardlab import auth
    from wizardlab.config import Settings

    tmp_path = Path(tmp_path)
    settings.setdefault("db", str(tmp_path / "app.db"))
    settings.setdefault("data_dir", str(tmp_path / "data"))
    settings.setdefault("port", free_port())
    ctx = AppContext(Settings.from_env(**settings))
    auth.ensure_admin(ctx.store(), {auth.ADMIN_ENV: ADMIN_PASSWORD})
    demo = build_app(ctx)
    launch(demo, ctx, prevent_thread_lock=True, quiet=True)
    ctx._demo = demo
    return f"http://127.0.0.1:{ctx.settings.port}", "admin", ADMIN_PASSWORD, ctx


def stop_app(ctx) -> None:
    demo = getattr(ctx, "_demo", None)
    if demo is not None:
        demo.close()


def make_user(ctx, name: str, password: str, role: str = "annotator") -> int:
    from wizardlab import auth

    return auth.add_user(ctx.store(), name, password, role)


def http_login(base_url: str, username: str, password: str):
    """An httpx client logged in through the app's real /login form (cookie kept)."""
    import httpx

    client = httpx.Client(base_url=base_url, timeout=30)
    r = client.post("/login", data={"username": username, "password": password})
    if r.status_code != 200:
        raise AssertionError(f"login of {username} failed: {r.status_code} {r.text[:200]}")
    return client


def call_api(client, api_name: str, data: list) -> tuple[str, object]:
    """Call a named endpoint through Gradio's HTTP API; returns (event, payload): 'complete' or 'error'."""
    r = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
    if r.status_code != 200:
        return "http_" + str(r.status_code), r.text
    event_id = r.json()["event_id"]
    event, payload = None, None
    with client.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                raw = line.split(":", 1)[1].strip()
                payload = json.loads(raw) if raw and raw != "null" else None
                if event in ("complete", "error"):
                    return event, payload
    return event or "none", payload


@contextmanager
def browser():
    """A headless Chromium (Playwright) browser; skips the test when Chromium is missing."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield _PatientBrowser(b)
        finally:
            b.close()


# Playwright's 30 s default is too short for uploads and first renders on a loaded 2-core box
UI_TIMEOUT_MS = 90_000


class _PatientBrowser:
    """The browser, with every new page and context waiting up to UI_TIMEOUT_MS by default."""

    def __init__(self, browser):
        self._browser = browser

    def new_page(self, **kwargs):
        page = self._browser.new_page(**kwargs)
        page.set_default_timeout(UI_TIMEOUT_MS)
        return page

    def new_context(self, **kwargs):
        context = self._browser.new_context(**kwargs)
        context.set_default_timeout(UI_TIMEOUT_MS)
        return context

    def __getattr__(self, name):
        return getattr(self._browser, name)


def login(page, base_url: str, username: str, password: str) -> None:
    """Fill Gradio's login form and wait for the app (the header) to appear."""
    page.goto(base_url)
    page.get_by_label("username").fill(username)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector(".wl-header .wl-user", timeout=UI_TIMEOUT_MS)


def make_forest(store, seeds: list[dict], rounds: list[list[dict]], *, created_by: str = "test") -> int:
    """Insert a finished evolve run straight into the store; returns its id.

    `seeds`: [{"instruction", "input", "response"}]; `rounds[r-1][i]`: the round-r node of
    seed i as {"status": "kept"|"eliminated", "instruction", "response", "rules": [...],
    "operation"}. Parents follow the engine's rule (newest kept node, else the seed).
    """
    import itertools

    from wizardlab.store.evol import EvolQueries

    run_id = store.create_run("evolve", {"rounds": len(rounds), "n_seeds": len(seeds)}, name="test forest",
                              created_by=created_by, status="done")
    store.insert_seeds(run_id, seeds)
    for r, nodes in enumerate(rounds, start=1):
        ops = itertools.cycle([n.get("operation", "deepening") for n in nodes])
        store.create_round(run_id, r, lambda: next(ops))
        pending = list(store.iter_pending(run_id, r))
        with store.tx() as conn:
            for row, spec in zip(pending, nodes):
                EvolQueries.write_node_result(conn, row["id"], status=spec["status"], instruction=spec["instruction"],
                                              response=spec.get("response"), fail_rules=spec.get("rules", []),
                                              error=None, raw={})
    return run_id


def _demo_responder(body: dict) -> str:
    """The fake LLM's scripted answers, with some evolutions judged equal and some refusals (for screenshots)."""
    import hashlib

    from tests.fakellm import evol_responder

    text = json.dumps(body.get("messages", []))
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    answer = evol_responder(body)
    if answer == "Not Equal" and h % 4 == 0:
        return "Equal"
    if answer.startswith("Here is a careful answer") and h % 7 == 0:
        return "Sorry, I cannot help with that."
    return answer


def take_screenshots(out_dir: str) -> list[str]:
    """Screenshots of the login page and the APP tabs as a new admin and annotator see them."""
    import tempfile

    from tests.fakellm import FakeLLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with FakeLLM(_demo_responder) as fake, browser() as b:
        base_url, admin, password, ctx = start_app(Path(tempfile.mkdtemp()), base_url=fake.base_url,
                                                   model="Qwen2.5-7B-Instruct", concurrency=8)
        make_user(ctx, "ana", "ana-pass-123", "annotator")
        page = b.new_page(viewport={"width": 1440, "height": 1000})

        def shot(name):
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / name), full_page=True)
            shots.append(str(out / name))

        page.goto(base_url)
        page.get_by_label("username").wait_for()
        shot("login.png")
        login(page, base_url, admin, password)
        page.locator("#wl-rounds input").fill("3")
        page.locator("#wl-start").click()
        page.locator("#wl-progress .wl-run-head", has_text="done").wait_for(timeout=120_000)
        store = ctx.store()
        run_id = store.latest_run_id()
        from wizardlab import curation

        curation.bulk_override(store, run_id, {"round": 2, "rule": "no_information_gain"}, "restore",
                               "reviewed: the rewrite does add a constraint", admin)
        fake.latency = lambda: 0.25
        page.get_by_label("Random seed").fill("1")
        page.locator("#wl-start").click()
        page.locator("#wl-progress .wl-bar").wait_for()
        page.locator("#wl-progress .wl-bar-label", has_text="round").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        shot("evolve.png")
        page.get_by_role("tab", name="Lineage").click()
        page.locator("#wl-lin-run input").wait_for()
        page.get_by_label("Rule or flag", exact=True).click()
        page.get_by_role("option", name="no_information_gain").click()
        page.locator("#wl-lin-find").click()
        page.locator("#wl-lin-roots [data-testid='cell-0-0']").wait_for()
        audited = next(r for r in store.find_roots(run_id, {"rule": "no_information_gain"}) if r["overrides"])
        page.locator("#wl-lin-root input").fill(str(audited["root_id"]))
        page.locator("#wl-lin-show").click()
        page.locator("#wl-tree .wl-audit").wait_for()
        page.locator("#wl-tree details summary").nth(1).click()
        shot("lineage.png")
        page.get_by_role("tab", name="Admin").click()
        page.locator("#wl-users [data-testid='cell-0-0']").wait_for()
        shot("admin.png")
        for run in store.list_runs():
            if run["status"] == "running":
                jobs_cancel(store, run["id"])
        page.goto(f"{base_url}/logout")
        login(page, base_url, "ana", "ana-pass-123")
        shot("annotator.png")
        stop_app(ctx)
    return shots


def jobs_cancel(store, run_id: int) -> None:
    from wizardlab import jobs

    jobs.cancel(store, run_id)


if __name__ == "__main__":
    import sys

    print("\n".join(take_screenshots(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))


def upload_file(page, elem_id: str, path) -> None:
    """Put a file into the gr.File `#elem_id` and wait until it shows the file's name.

    The component is waited for first (a tab's content may still be rendering after its click,
    and a file set into an input that is then re-rendered is lost). If the name does not show
    and the file input is still there (the upload was lost), the file is set once more; once a
    file is taken, Gradio replaces the input with the file's name, so a slow upload is only waited for."""
    box = page.locator(f"#{elem_id}")
    box.wait_for(state="visible")
    name = box.get_by_text(Path(path).name).first
    for attempt in range(2):
        file_input = box.locator("input[type=file]")
        if file_input.count():
            file_input.set_input_files(str(path))
        try:
            name.wait_for(timeout=UI_TIMEOUT_MS)
            return
        except Exception:  # playwright's TimeoutError: look again once, then let the second wait raise
            if attempt:
                raise


def choose_option(page, elem_id: str, option: str, timeout_s: float = 90.0) -> None:
    """Open dropdown `#elem_id` and pick `option`; the list is refreshed by an event (a tab's select)
    that may answer after the first click under load, so the list is reopened until it shows up."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        page.locator(f"#{elem_id} input").click()
        item = page.get_by_role("option", name=option)
        try:
            item.wait_for(timeout=5_000)
            item.click()
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: not listed yet
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
