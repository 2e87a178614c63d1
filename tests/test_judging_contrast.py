"""Readable judging (issue 12.1): code, inline code, tables and links inside both response
boxes meet WCAG AA (contrast >= 4.5:1) in the light and the dark theme, measured from the
colours Chromium computes (the background is found by compositing the element's ancestors).

`python tests/test_judging_contrast.py [DIR]` writes DIR/judge_code.png (default docs/screenshots).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.uihelpers import browser, login, make_user, start_app, stop_app
from wizardlab import evaluation as ev

ANSWER = """Here is the function, using `sorted()`:

```python
def top(xs, n=3):
    return sorted(xs, reverse=True)[:n]  # largest first
```

| input | output |
|---|---|
| `[3, 1, 2]` | `[3, 2, 1]` |

See [the Python docs](https://docs.python.org/3/library/functions.html#sorted)."""
PARTS = {"code block": "pre code", "inline code": "p code", "table cell": "td", "table header": "th", "link": "a"}
CONTRAST_JS = """
(sel) => {
  const rgba = (s) => { const m = s.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, below) => [0, 1, 2].map(i => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let base = [255, 255, 255, 1];
    if (layers.length && layers[layers.length - 1][3] >= 1) base = layers.pop();
    for (const c of layers.reverse()) base = over(c, base);
    return base;
  };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                       return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  return Array.from(document.querySelectorAll(sel)).map((el) => {
    const bg = background(el), fg = over(rgba(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return {text: el.textContent.slice(0, 30), fg: fg.slice(0, 3), bg: bg.slice(0, 3), ratio: (a + 0.05) / (b + 0.05)};
  });
}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contrast")
    base_url, _, _, ctx = start_app(tmp)
    rows = [{"prompt_id": 1, "prompt": "Write `top(xs, n)` in Python.", "model": m, "output": ANSWER}
            for m in ("m-a", "m-b")]
    path = tmp / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(ctx.store(), path, testset="code")
    ev.create_campaign(ctx.store(), "code", [s["id"] for s in sets], k=1)
    make_user(ctx, "ann", "ann-pass-123")
    yield base_url, ctx
    stop_app(ctx)


def measure(page) -> dict:
    """{(box, part): [ratios]} for every part inside both response boxes."""
    found = {}
    for box in ("#wl-judge-r1", "#wl-judge-r2"):
        for part, sel in PARTS.items():
            found[(box, part)] = page.evaluate(CONTRAST_JS, f"{box} .wl-md {sel}")
    return found


def judge_page(b, base_url: str, theme: str):
    page = b.new_page(viewport={"width": 1400, "height": 1000}, color_scheme=theme)
    login(page, base_url, "ann", "ann-pass-123")
    if theme == "dark":
        page.goto(base_url + "/?__theme=dark")
        page.wait_for_selector(".wl-header .wl-user", timeout=30_000)
    page.locator("#wl-judge-r2 pre code").wait_for()
    return page


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_code_tables_and_links_in_responses_meet_wcag_aa(app, theme):
    base_url, _ = app
    with browser() as b:
        page = judge_page(b, base_url, theme)
        found = measure(page)
    low = {k: [r for r in v if r["ratio"] < 4.5] for k, v in found.items()}
    assert all(found.values()), {k: len(v) for k, v in found.items()}  # every part is there to measure
    assert not any(low.values()), {k: v for k, v in low.items() if v}


def take_screenshot(out_dir: str) -> str:
    import tempfile

    out = Path(out_dir) / "judge_code.png"
    gen = app.__wrapped__(type("F", (), {"mktemp": lambda self, n: Path(tempfile.mkdtemp())})())
    base_url, _ = next(gen)
    try:
        with browser() as b:
            page = judge_page(b, base_url, "light")
            page.wait_for_timeout(500)
            page.screenshot(path=str(out), full_page=True)
            print(json.dumps({f"{k[0]} {k[1]}": [round(r["ratio"], 1) for r in v] for k, v in measure(page).items()}))
    finally:
        next(gen, None)
    return str(out)


if __name__ == "__main__":
    import sys

    print(take_screenshot(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
