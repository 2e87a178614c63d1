"""The WizardLab Gradio app: header, one tab per module in `TABS`, login, role-based tabs.

`build_app(ctx)` builds the Blocks; `launch(demo, ctx, ...)` serves it with the login
(`auth=ctx.authenticate`) and the stylesheet. A tab module that is not there yet is
skipped with a note, so tabs land independently. A tab's role says who sees it: "admin"
(admins only), "curate" (admins and curators), "any"; the callbacks refuse the others on
the server anyway (`ctx.require_admin`, `ctx.require_curator`).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import inspect
import os
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from gradio import state_holder
from starlette.middleware import Middleware

from eval_ui import render
from eval_ui.context import AppContext, PageLoads, at_page_load, ui_errors
from eval_ui.login_guard import LoginGuard

TABS: list[tuple[str, str, str]] = [
    ("Evolve", "eval_ui.evolve", "admin"),
    ("Lineage", "eval_ui.lineage", "curate"),
    ("Data", "eval_ui.data", "curate"),
    ("Train", "eval_ui.train", "admin"),
    ("Evaluate", "eval_ui.evaluate", "admin"),
    ("Experiments", "eval_ui.experiments", "admin"),
    ("Judge", "eval_ui.judge", "any"),
    ("Admin", "eval_ui.admin", "admin"),
]
CSS_PATH = Path(__file__).parent / "assets" / "app.css"
# Gradio rebuilds an analytics summary after every event (~6 ms once 10,000 are stored): every
# 1000 events keeps judging p95 well under 100 ms (bench/judge_latency.py). Read by gr.Blocks().
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")


def tab_id(label: str) -> str:
    return label.lower()


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="WizardLab") as demo, PageLoads.gathering() as page_loads:
        header = gr.HTML(header_html(ctx, None), elem_id="wl-header")
        tabs = []
        with gr.Tabs(elem_id="wl-tabs") as tab_group:
            for label, module, role in TABS:
                with gr.Tab(label, id=tab_id(label), visible=role == "any", elem_id=f"wl-tab-{tab_id(label)}") as tab:
                    _build_tab(module, ctx)
                tabs.append((tab, role))

        def on_load(request: gr.Request):
            return _on_load(ctx, tabs, request)

        at_page_load(on_load, [header, tab_group, *[t for t, _ in tabs]])
        page_loads.attach(demo)  # every tab's page-load work: one event
        hide_api_description(demo)
        catch_user_errors(demo)
    return demo


def catch_user_errors(demo: gr.Blocks) -> None:
    """Every callback, wrapped or not by its tab: a `UserError` becomes the escaped one-line pop-up of
    `ui_errors` (one log line, no traceback); other exceptions keep their traceback."""
    for fn in demo.fns.values():
        plain = fn.fn is not None and not (inspect.iscoroutinefunction(fn.fn) or inspect.isgeneratorfunction(fn.fn)
                                           or inspect.isasyncgenfunction(fn.fn))
        if plain and not getattr(fn.fn, "_wl_ui_errors", False):
            fn.fn = ui_errors(fn.fn)


def hide_api_description(demo: gr.Blocks) -> None:
    """Named endpoints stay callable (the CLI-like HTTP API, tests) but are left out of the API
    description: Gradio puts that description into the page served at `/` even before login, and it
    would list every admin endpoint (`admin_add_user`, `train_launch`, ...) to anyone."""
    for fn in demo.fns.values():
        if fn.api_visibility == "public":
            fn.api_visibility = "undocumented"


def _build_tab(module_name: str, ctx: AppContext) -> None:
    if importlib.util.find_spec(module_name) is None:
        gr.HTML(render.note(f"This tab is not installed yet ({module_name}).", "warn"))
        return
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # one broken tab must not take the whole app down
        gr.HTML(render.note(f"This tab could not be loaded: {exc}", "error"))
        return
    module.build_tab(ctx)


def _on_load(ctx: AppContext, tabs: list, request: gr.Request):
    """Show the tabs the signed-in user's role allows; admins start on Evolve, curators on Lineage,
    annotators on Judge."""
    user = ctx.user_or_none(request)
    visible = [tab_visible(role, user) for _, role in tabs]
    first = next((tab_id(label) for (label, _, _), v in zip(TABS, visible) if v), None)
    return (header_html(ctx, user), gr.Tabs(selected=first),
            *[gr.Tab(visible=v) for v in visible])


def _empty(ctx: AppContext) -> bool:
    from wizardlab import tour

    return tour.offered(ctx.store())


def tab_visible(tab_role: str, user: dict | None) -> bool:
    """Whether a tab of role "admin" | "curate" | "any" is shown to `user`."""
    role = user["role"] if user else None
    return tab_role == "any" or role == "admin" or (tab_role == "curate" and role == "curator")


def header_html(ctx: AppContext, user: dict | None) -> str:
    """The header. Only admins see which LLM is configured: for annotators a model name could
    unblind a campaign whose outputs came from that model (and the page config built before
    login reaches every browser, so the default header names no model)."""
    s = ctx.settings
    if not user or user["role"] != "admin":
        llm = ""
    elif s.uses_embedded_llm:
        llm = ('LLM: <b>embedded Gemma 3 270M</b> <span class="wl-warn-inline">a small base model, fine for demos, '
               'not for real data; start with <code>--base-url URL --model NAME</code> for an endpoint</span>')
    else:
        llm = f"LLM: <b>{render.esc(s.llm_label)}</b>"
    if user and user["role"] == "admin" and _empty(ctx):
        llm += ' <span class="wl-tour-hint">New here? <b>Experiments</b> tab: Take the tour.</span>'
    who = ""
    if user:
        who = (f'<span class="wl-user">{render.esc(user["username"])} · {render.esc(user["role"])}</span>'
               f'<a class="wl-logout" href="logout">Log out</a>')
    return (f'<div class="wl-header"><div class="wl-brand">WizardLab<span class="wl-sub">Evol-Instruct workbench'
            f'</span></div><div class="wl-llm">{llm}</div><div class="wl-who">{who}</div></div>')


# Gradio's queue looks for new events every 1 ms and for progress to send every 10 ms, also with nobody
# connected: ~1,100 wake-ups a second, each summing the queues of all ~190 event handlers: 9-10% of a
# core here when idle, and most of what an admin login was measured to cost (the page takes seconds to
# settle). Every 10 ms / 50 ms: ~2% idle; an event waits at most 10 ms more before it starts
# (bench/judge_latency.py: judging p50 +5-10 ms, p95 well under 100 ms).
QUEUE_POLL_S = 0.01
PROGRESS_POLL_S = 0.05


class LeanSessionState(state_holder.SessionState):
    """Gradio's per-session state, without the config of every block that Gradio computes up front
    for each new session (`config_values`: about 0.3 s of CPU per page load here, the largest part of
    a login). Gradio fills that dict per block as events touch them anyway and reads it whole only
    for deep links (`gr.DeepLinkButton`), which WizardLab does not use."""

    def __init__(self, blocks):
        # the base class keeps the config of each block in `blocks.blocks`: handing it none leaves
        # the dict empty; everything else it sets comes from `default_config`, as before
        super().__init__(SimpleNamespace(default_config=blocks.default_config, blocks={}))


def lean_sessions() -> None:
    """New sessions (`StateHolder` creates one per browser page) start as `LeanSessionState`."""
    state_holder.SessionState = LeanSessionState


def calm_queue(demo: gr.Blocks, poll_s: float = QUEUE_POLL_S, progress_poll_s: float = PROGRESS_POLL_S) -> None:
    """Set how often `demo`'s queue polls when it has nothing to start (Gradio: 1 ms) and for
    progress updates (10 ms). Call before `demo.launch` (which starts the queue's loops)."""
    demo._queue.sleep_when_free = poll_s
    demo._queue.progress_update_sleep_when_free = progress_poll_s


def settle_heap() -> int:
    """Collect what start-up left, then freeze the heap as it is (modules, the ~190 handlers' blocks):
    the cyclic garbage collector then no longer walks those objects. Before this, a request that
    allocated a lot (a lineage search builds ~52,000 result tuples at the paper's scale) could set
    off a full collection over the whole app: ~0.1 s, seen as the first such search in a process
    taking 0.25-0.32 s instead of 0.13-0.17 s. Returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def launch(demo: gr.Blocks, ctx: AppContext, **kwargs):
    """Serve `demo` with the login and stylesheet; kwargs go to `gr.Blocks.launch`."""
    kwargs.setdefault("server_name", ctx.settings.host)
    kwargs.setdefault("server_port", ctx.settings.port)
    kwargs.setdefault("app_kwargs", {})["middleware"] = [Middleware(LoginGuard, limiter=ctx.login_limiter)]
    calm_queue(demo)
    lean_sessions()
    settle_heap()
    return demo.launch(
        auth=ctx.authenticate,
        auth_message="Sign in to WizardLab. Ask an admin for an account. After 5 wrong passwords an account "
                     "(and an address) waits before the next try: up to 5 minutes.",
        css_paths=[CSS_PATH],
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        ssr_mode=False,
        footer_links=[],
        **kwargs,
    )
