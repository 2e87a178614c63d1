"""The Judge tab (every signed-in user): blind pairwise judging, fast and from the keyboard.

The annotator picks an open campaign (shown as "Campaign N", never its admin name), reads
the guidelines, and judges pair after pair: the prompt and two responses labelled only
"Response 1" / "Response 2". Model identities stay on the server: the current
assignment id, its idempotency token and the time it was shown live in `gr.State`
(server-side per session), and the browser only ever receives rendered text. Keys:
1 / 2 / t (tie) / b (both bad) / s (skip) / u (undo), via a small script that clicks the
buttons. Every judging event is one Gradio event that stores the click and returns the
next item; they share a concurrency limit of 16 (the default of 1 queued requests).

Text from models is rendered as Markdown with raw HTML switched off (markdown-it-py):
`<script>` and `<img onerror>` appear as literal text and `javascript:` links are not
made links.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import gradio as gr
from markdown_it import MarkdownIt

from eval_ui import render
from eval_ui.context import AppContext, on_show, ui_errors
from wizardlab import evaluation as ev
from wizardlab.errors import UserError

CONCURRENCY = 16
PREVIEW_CHARS = 20_000  # a longer response shows its start and a "show all"
N_BUTTONS = 6  # 1, tie, 2, skip, undo, reload: inactive until a campaign is chosen
_TOKEN_KEY = secrets.token_bytes(16)  # per server process: tokens are opaque and unguessable
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
ALREADY_JUDGED = ("Already judged in another tab: this click was not stored (your first answer counts). "
                  "Here is your next item.")
PAUSED = ("Your judging on this campaign is paused: the lead has been told and will get in touch. "
          "Thank you for your time.")
CHOICES = {"1": "Response 1 is better", "2": "Response 2 is better", "tie": "Tie", "both_bad": "Both are bad"}
KEYS_JS = """
() => {
  if (window.__wlJudgeKeys) return;
  window.__wlJudgeKeys = true;
  const map = {"1": "wl-judge-b1", "2": "wl-judge-b2", "t": "wl-judge-tie", "b": "wl-judge-bad",
               "s": "wl-judge-skip", "u": "wl-judge-undo"};
  document.addEventListener("keydown", (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const id = map[e.key.toLowerCase()];
    const btn = id && document.getElementById(id);
    if (btn && btn.checkVisibility() && !btn.disabled) { e.preventDefault(); btn.click(); }
  });
}
"""
STYLE = """<style>
.wl-judge-cols { gap: 14px !important; }
.wl-resp { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 14px;
  background: var(--background-fill-primary); min-height: 120px; max-height: 62vh; overflow: auto; }
.wl-resp-h { font-weight: 700; color: var(--color-accent); margin-bottom: 6px; font-size: 0.95rem; }
.wl-prompt { border-left: 4px solid var(--color-accent); padding: 8px 14px; background: #eef2ff33;
  border-radius: 6px; margin-bottom: 4px; }
.wl-md p { margin: 0 0 0.6em; }
.wl-kbd { display: inline-block; border: 1px solid #cbd5e1; border-bottom-width: 2px; border-radius: 4px;
  padding: 0 5px; font-family: var(--font-mono); font-size: 0.75rem; margin: 0 2px; background: #f8fafc; }
.wl-progress { font-size: 0.9rem; }
.wl-hidden-style { display: none !important; }
</style>"""


def md(text: str | None) -> str:
    """Model or user text as safe HTML: Markdown without raw HTML, its direction isolated
    (`dir="auto"`), and a very long text drawn in part with a "show all" for the rest."""
    text = text or ""
    if len(text) <= PREVIEW_CHARS:
        return f'<div class="wl-md" dir="auto">{_MD.render(text)}</div>'
    cut = text.rfind("\n\n", 0, PREVIEW_CHARS)
    cut = cut if cut > PREVIEW_CHARS // 2 else PREVIEW_CHARS
    rest = text[cut:render.MAX_SHOWN_CHARS]
    tail = f"\n\n… {len(text) - cut - len(rest):,} more characters not shown" if cut + len(rest) < len(text) else ""
    return (f'<div class="wl-md" dir="auto">{_MD.render(text[:cut])}<details class="wl-more"><summary>show all '
            f'({len(text):,} characters)</summary>{_MD.render(rest + tail)}</details></div>')


def _progress_html(p: dict | None, note: str = "") -> str:
    if not p:
        return render.note(note or "Choose a campaign to start.", "info")
    label = f"{p['done']} done of {p['total']} assigned" + (f" · {p['skipped']} skipped" if p["skipped"] else "")
    return f'<div class="wl-progress">{render.bar(p["done"], p["total"], label)}{note}</div>'


def item_token(assignment_id: int) -> str:
    """The opaque id of an assignment on screen: the same for every event that shows it."""
    return hmac.new(_TOKEN_KEY, str(assignment_id).encode(), hashlib.sha256).hexdigest()[:32]


def _item_outputs(item: dict | None, state: dict, note: str = ""):
    """(prompt, response 1, response 2, progress, state, rationale, token) for the item, or the done page.

    The token is an opaque id of the assignment on screen (`item_token`); a click sends it
    back, so a stale second click (the item has changed since) is recognised and ignored.
    """
    if item is None:
        state = {**state, "assignment_id": None, "token": None}
        done = state.get("campaign_id") and (note == "" or ALREADY_JUDGED in note)
        message = (note + render.note("All done in this campaign: thank you!", "ok")) if done else (note or "")
        return message, "", "", _progress_html(state.get("progress"), ""), state, "", ""
    if state.get("assignment_id") != item["assignment_id"] or not state.get("token"):
        state = {**state, "assignment_id": item["assignment_id"], "token": item_token(item["assignment_id"]),
                 "shown_at": time.time()}
    state = {**state, "progress": item["progress"]}
    prompt = f'<div class="wl-prompt"><div class="wl-resp-h">Prompt</div>{md(item["prompt"])}</div>'
    one = f'<div class="wl-resp"><div class="wl-resp-h">Response 1</div>{md(item["response_1"])}</div>'
    two = f'<div class="wl-resp"><div class="wl-resp-h">Response 2</div>{md(item["response_2"])}</div>'
    return prompt, one, two, _progress_html(item["progress"], note), state, "", state["token"]


class Judge:
    """The tab's callbacks; each takes the per-session state and the request (for the user)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def _campaign(self, state: dict) -> dict:
        cid = state.get("campaign_id")
        if not cid:
            raise UserError("choose a campaign first")
        campaign = self.ctx.store().campaign(int(cid))
        if campaign is None:
            raise UserError("this campaign no longer exists")
        return campaign

    def _show_next(self, campaign: dict, user: dict, state: dict, note: str = ""):
        store = self.ctx.store()
        item = ev.next_item(store, campaign, user["username"])
        if item is None:
            state = {**state, "progress": store.annotator_progress(campaign["id"], user["username"])}
            if ev.is_paused(store, campaign, user["username"]):
                note = render.note(PAUSED, "warn")
        return _item_outputs(item, state, note)

    def campaigns(self, request: gr.Request):
        """Runs on page load for everyone: annotators with one open campaign start at once;
        admins choose (so merely opening the app never takes an item slot)."""
        user = self.ctx.current_user(request)
        choices = [(c["title"], c["id"]) for c in ev.annotator_campaigns(self.ctx.store())]
        auto = len(choices) == 1 and user["role"] != "admin"
        return gr.Dropdown(choices=choices, value=choices[0][1] if auto else None)

    def start(self, campaign_id, state: dict, request: gr.Request):
        """Open a campaign in this tab; the judging buttons work only once one is chosen."""
        user = self.ctx.current_user(request)
        if not campaign_id:
            return ("", "", "", _progress_html(None), {}, gr.Textbox(visible=False), "", "", gr.Button(visible=False),
                    *[gr.Button(interactive=False)] * N_BUTTONS)
        state = {"campaign_id": int(campaign_id), "tab": secrets.token_hex(8)}  # this browser tab's own id
        campaign = self._campaign(state)
        guide = md(campaign["guidelines"]) + '<div class="wl-muted">Criteria: ' + render.chips(ev.CRITERIA) + "</div>"
        prompt, one, two, progress, state, _, token = self._show_next(campaign, user, state)
        return (prompt, one, two, progress, state, gr.Textbox(value="", visible=bool(campaign["config"].get("rationale"))),
                token, guide, gr.Button(visible=bool(campaign["allow_both_bad"]), interactive=True),
                *[gr.Button(interactive=True)] * N_BUTTONS)

    def next(self, state: dict, request: gr.Request):
        user = self.ctx.current_user(request)
        campaign = self._campaign(state)
        return self._show_next(campaign, user, state)

    def choose(self, choice: str):
        def handler(state: dict, token: str, rationale: str, request: gr.Request):
            user = self.ctx.current_user(request)
            campaign = self._campaign(state)
            note = ""
            if state.get("assignment_id") and token == state.get("token"):  # else: a stale repeat, ignore
                seconds = round(time.time() - state.get("shown_at", time.time()), 2)
                result = ev.submit(self.ctx.store(), campaign, user["username"], state["assignment_id"], choice,
                                   request_id=f"{state['token']}.{state.get('tab', '')}",
                                   rationale=(rationale or "").strip() or None, seconds=seconds)
                if result["elsewhere"]:
                    note = render.note(ALREADY_JUDGED, "warn")
            return self._show_next(campaign, user, state, note)

        handler.__name__ = f"judge_{choice}"
        return handler

    def skip(self, state: dict, token: str, request: gr.Request):
        user = self.ctx.current_user(request)
        campaign = self._campaign(state)
        if state.get("assignment_id") and token == state.get("token"):
            ev.skip(self.ctx.store(), user["username"], state["assignment_id"])
        return self._show_next(campaign, user, state)

    def undo(self, state: dict, request: gr.Request):
        user = self.ctx.current_user(request)
        campaign = self._campaign(state)
        reopened = ev.undo(self.ctx.store(), campaign, user["username"])
        note = "" if reopened else render.note("Nothing to undo.", "warn")
        return self._show_next(campaign, user, state, note)


def build_tab(ctx: AppContext) -> None:
    judge = Judge(ctx)
    gr.HTML(STYLE, padding=False, container=False, elem_classes="wl-hidden-style")
    with gr.Row(equal_height=True):
        campaign = gr.Dropdown(label="Campaign", choices=[], allow_custom_value=True, scale=1,
                               elem_id="wl-judge-campaign")
        progress = gr.HTML(_progress_html(None), elem_id="wl-judge-progress")
    with gr.Accordion("Guidelines", open=False):
        guidelines = gr.HTML()
    prompt = gr.HTML(elem_id="wl-judge-prompt")
    with gr.Row(equal_height=False, elem_classes="wl-judge-cols"):
        resp1 = gr.HTML(elem_id="wl-judge-r1")
        resp2 = gr.HTML(elem_id="wl-judge-r2")
    rationale = gr.Textbox(label="Why? (optional)", max_lines=3, visible=False, elem_id="wl-judge-rationale",
                           max_length=ev.MAX_RATIONALE)
    with gr.Row():
        b1 = gr.Button("Response 1 is better  [1]", variant="primary", elem_id="wl-judge-b1", interactive=False)
        tie = gr.Button("Tie  [t]", elem_id="wl-judge-tie", interactive=False)
        b2 = gr.Button("Response 2 is better  [2]", variant="primary", elem_id="wl-judge-b2", interactive=False)
        bad = gr.Button("Both are bad  [b]", visible=False, elem_id="wl-judge-bad")
    with gr.Row():
        skip = gr.Button("Skip  [s]", size="sm", elem_id="wl-judge-skip", interactive=False)
        undo = gr.Button("Undo last  [u]", size="sm", elem_id="wl-judge-undo", interactive=False)
        nxt = gr.Button("Reload item", size="sm", elem_id="wl-judge-next", interactive=False)
    gr.HTML('<div class="wl-muted">Keys: <span class="wl-kbd">1</span> <span class="wl-kbd">2</span> '
            '<span class="wl-kbd">t</span> tie <span class="wl-kbd">b</span> both bad '
            '<span class="wl-kbd">s</span> skip <span class="wl-kbd">u</span> undo</div>')
    state = gr.State({})
    token = gr.Textbox(visible=False, elem_id="wl-judge-token")
    item_out = [prompt, resp1, resp2, progress, state, rationale, token]
    on_show(ui_errors(judge.campaigns), [campaign])
    campaign.change(ui_errors(judge.start), [campaign, state], [*item_out, guidelines, bad, b1, tie, b2, skip, undo, nxt],
                    api_name="judge_start", concurrency_limit=CONCURRENCY, concurrency_id="judge")
    common = {"concurrency_limit": CONCURRENCY, "concurrency_id": "judge", "show_progress": "hidden"}
    nxt.click(ui_errors(judge.next), [state], item_out, api_name="judge_next", **common)
    for button, choice in ((b1, "1"), (b2, "2"), (tie, "tie"), (bad, "both_bad")):
        button.click(ui_errors(judge.choose(choice)), [state, token, rationale], item_out, api_name=f"judge_{choice}",
                     **common)
    skip.click(ui_errors(judge.skip), [state, token], item_out, api_name="judge_skip", **common)
    undo.click(ui_errors(judge.undo), [state], item_out, api_name="judge_undo", **common)
    root = gr.context.Context.root_block
    if root is not None:
        root.load(None, None, None, js=KEYS_JS)
