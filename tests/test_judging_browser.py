"""The Judge tab in headless Chromium: whole annotator sessions from the keyboard, and blinding.

Three annotators log in one after another in their own browser contexts and judge a small
campaign (3 items, k=3) with the keys 1 / 2 / t, undo with u and redo; every response the
browser receives (API answers, SSE streams, scripts, the page config) and the rendered
page are recorded and searched for the model and output-set names. Model outputs carry
hostile HTML that must show as text and run nothing.
"""

from __future__ import annotations

import json

import pytest

from tests.uihelpers import UI_TIMEOUT_MS, browser, login, make_user, start_app, stop_app
from wizardlab import evaluation as ev

MODELS = ("zebra-model-7b", "okapi-model-13b")
SECRETS = (*MODELS, "Zebra vs Okapi")
HOSTILE = "<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\"> [x](javascript:alert(1))"
ANNOTATORS = ("ann1", "ann2", "ann3")
# Chromium does not keep the body of a streamed response it has already handed to the page
# ("No data found for resource"), so response.text() misses most /queue/data streams. The page
# itself records what it reads from them: every chunk of every such stream, whether it ends or not.
TAP_STREAMS = """
window.__wl_streams = [];
const _fetch = window.fetch;
window.fetch = async (...args) => {
  const res = await _fetch(...args);
  const url = String(args[0] && args[0].url || args[0]);
  if (url.includes("/queue/data") && res.body) {
    const slot = window.__wl_streams.push(url + "\\n") - 1;
    const reader = res.clone().body.getReader(), dec = new TextDecoder();
    (async () => { for (;;) { const {done, value} = await reader.read(); if (done) break;
                              window.__wl_streams[slot] += dec.decode(value, {stream: true}); } })();
  }
  return res;
};
const _ES = window.EventSource;
if (_ES) window.EventSource = class extends _ES {
  constructor(url, opts) { super(url, opts);
    const slot = window.__wl_streams.push(String(url) + "\\n") - 1;
    this.addEventListener("message", (e) => { window.__wl_streams[slot] += "data: " + e.data + "\\n"; }); }
};
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judge-ui")
    base_url, _, _, ctx = start_app(tmp)
    rows = [{"prompt_id": i, "prompt": f"Prompt {i}: explain `x < y` in **bold**.", "model": m,
             "output": f"Reply {i}.{j}\n\n```python\nprint({i} < {j})\n```\n{HOSTILE}"}
            for j, m in enumerate(MODELS) for i in range(3)]
    path = tmp / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(ctx.store(), path, testset="toy")
    cid = ev.create_campaign(ctx.store(), "Zebra vs Okapi", [s["id"] for s in sets], k=3)
    for name in ANNOTATORS:
        make_user(ctx, name, "ann-pass-123")
    yield base_url, ctx, cid
    stop_app(ctx)


def _progress(page, done: int):
    page.locator("#wl-judge-progress", has_text=f"{done} done of 3").wait_for()


def _session(b, base_url: str, name: str, keys: list[str], seen: list[str]):
    context = b.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)

    def record(response):
        try:
            seen.append(response.url + "\n" + response.text())
        except Exception as exc:  # noqa: BLE001 - a body the browser cannot read back (redirect, aborted)
            seen.append(f"{response.url}\n<unreadable: {type(exc).__name__}>")

    page.on("response", record)
    page.add_init_script(TAP_STREAMS)
    login(page, base_url, name, "ann-pass-123")
    page.locator("#wl-judge-r1", has_text="Response 1").wait_for()  # the one open campaign starts by itself
    _progress(page, 0)
    seen.append(page.content())
    for i, key in enumerate(keys):
        page.locator("body").press(key)
        _progress(page, i + 1)
        seen.append(page.content())
    page.locator("#wl-judge-prompt", has_text="All done").wait_for()
    page.locator("body").press("u")  # undo the last one: it comes back
    _progress(page, len(keys) - 1)
    page.locator("#wl-judge-r1", has_text="Response 1").wait_for()
    page.locator("body").press(keys[-1])
    page.locator("#wl-judge-prompt", has_text="All done").wait_for()
    seen.append(page.content())
    assert page.evaluate("window.__pwned") is None
    streams = page.evaluate("window.__wl_streams")
    assert streams and all("/queue/data" in s.split("\n", 1)[0] for s in streams)
    seen.extend(streams)
    context.close()


def test_three_annotators_whole_sessions_by_keyboard_and_blind(app):
    base_url, ctx, cid = app
    store = ctx.store()
    seen: list[str] = []
    keys = {"ann1": ["1", "2", "t"], "ann2": ["2", "2", "1"], "ann3": ["t", "1", "1"]}
    with browser() as b:
        for name in ANNOTATORS:
            _session(b, base_url, name, keys[name], seen)
    rows = store.query("SELECT j.*, a.id AS aid FROM judgments j JOIN assignments a ON a.item_id = j.item_id"
                       " AND a.annotator = j.annotator WHERE j.campaign_id = ? ORDER BY j.id", (cid,))
    assert len(rows) == 9 and all(r["source"] == "ui" and r["seconds"] is not None for r in rows)
    for name in ANNOTATORS:
        mine = sorted((r for r in rows if r["annotator"] == name), key=lambda r: r["aid"])
        for key, r in zip(keys[name], mine):  # the key pressed, translated to model terms via what was shown
            expected = "tie" if key == "t" else ("a" if (key == "1") == bool(r["a_on_left"]) else "b")
            assert r["label"] == expected
    assert {r["a_on_left"] for r in rows} == {0, 1}
    assert store.scalar("SELECT COUNT(*) FROM assignments WHERE status = 'open'") == 0
    # blinding: no model or campaign name in anything the browser received or showed
    assert len(seen) > 30
    leaks = [(s[:120], secret) for s in seen for secret in SECRETS if secret.lower() in s.lower()]
    assert not leaks
    assert any("Response 2" in s for s in seen) and any("&lt;script&gt;" in s for s in seen)
    streamed = [s for s in seen if "/queue/data" in s.split("\n", 1)[0]]
    # the SSE answers themselves were read and searched: every reply shown came through a stream
    for i in range(3):
        for j in range(2):
            assert any(f"Reply {i}.{j}" in s for s in streamed), (i, j)
