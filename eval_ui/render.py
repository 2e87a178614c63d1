"""Safe HTML for model and user text, shared by every tab.

Everything that came from a model, a seed file or a person goes through `esc()` before it
becomes HTML, so `<script>`, `<img onerror=...>` and `[x](javascript:...)` show as the
literal characters and run nothing. Only the fixed markup written in this module is HTML.
Use `text()` for a block of free text, `badge()` for a status, `table()` for small tables.
"""

from __future__ import annotations

import html
import time

STATUS_CLASS = {"seed": "seed", "kept": "kept", "eliminated": "elim", "pending": "pending",
                "running": "running", "done": "kept", "failed": "elim", "cancelled": "pending",
                "queued": "pending", "restore": "kept", "eliminate": "elim"}


def esc(value) -> str:
    """HTML-escape anything (None becomes '')."""
    return "" if value is None else html.escape(str(value), quote=True)


def message(value) -> str:
    """Text for a pop-up (`gr.Error` / `gr.Warning` / `gr.Info`), which Gradio renders as HTML: `<`, `>`
    and `&` escaped, so a user name or a file's field can add no link, image or style. Quotes stay
    readable (the text never lands inside an attribute). Use via `eval_ui.context.popup_error`."""
    return html.escape(" ".join(str(value or "").split()), quote=False)


PREVIEW_CHARS = 3_000  # a longer text shows its start and a "show all"
MAX_SHOWN_CHARS = 100_000  # beyond this, not even "show all" draws it (export the data to read it all)


def text(value, cls: str = "wl-text", empty: str = "(empty)") -> str:
    """A block of free text shown literally (whitespace kept, nothing interpreted), its direction
    isolated (`dir="auto"`: a right-to-left override inside stays inside) and a long one collapsed."""
    if value is None or str(value) == "":
        return f'<div class="{cls} wl-empty">{esc(empty)}</div>'
    value = str(value)
    if len(value) <= PREVIEW_CHARS:
        return f'<div class="{cls}" dir="auto">{esc(value)}</div>'
    shown = value[:MAX_SHOWN_CHARS]
    cut = f"\n… {len(value) - len(shown):,} more characters not shown" if len(value) > len(shown) else ""
    return (f'<div class="{cls}" dir="auto">{esc(shown[:PREVIEW_CHARS])}<details class="wl-more"><summary>'
            f'show all ({len(value):,} characters)</summary><span dir="auto">{esc(shown[PREVIEW_CHARS:] + cut)}'
            f'</span></details></div>')


def inline(value) -> str:
    """User or model text inside a line of other text: escaped and bidi-isolated (`<bdi>`)."""
    return f"<bdi>{esc(value)}</bdi>"


def badge(status: str | None, label: str | None = None) -> str:
    cls = STATUS_CLASS.get(status or "", "pending")
    return f'<span class="wl-badge wl-{cls}">{esc(label or status or "?")}</span>'


def chips(values) -> str:
    return "".join(f'<span class="wl-chip">{esc(v)}</span>' for v in values)


def table(headers: list[str], rows: list[list], cls: str = "wl-table") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def note(message: str, kind: str = "info") -> str:
    """A one-line message box (kind: info | ok | warn | error)."""
    return f'<div class="wl-note wl-note-{esc(kind)}">{esc(message)}</div>'


def bar(done: int, total: int, label: str = "") -> str:
    pct = 0 if not total else max(0, min(100, round(100 * done / total)))
    return (f'<div class="wl-bar" title="{esc(label)}"><div class="wl-bar-fill" style="width:{pct}%"></div>'
            f'<span class="wl-bar-label">{esc(label)}</span></div>')


def duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def short(value, n: int = 120) -> str:
    """Plain text cut to `n` characters on one line (for table cells; still escaped when rendered)."""
    s = " ".join(str(value or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def when(iso: str | None) -> str:
    """'2026-11-25T13:44:10.123Z' -> '2026-11-25 13:44' (UTC)."""
    return (iso or "")[:16].replace("T", " ")


def now_label() -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime())
