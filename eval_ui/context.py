"""`AppContext`: what every tab's callbacks need (settings, the store, the signed-in user).

Roles are enforced here, on the server: `require_admin(request)` raises `gr.Error` for
anyone who is not an enabled admin, `require_curator(request)` for anyone who is neither
an admin nor a curator, whatever the browser shows or hides. The user is
looked up in the store on every call, so disabling an account takes effect at once.
`ui_errors` turns a `UserError` into a one-line `gr.Error` (no stack traces for users).
Per-user state lives in `gr.State` or the store, never in module globals.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import anyio
import gradio as gr

from eval_ui import render
from eval_ui.login_guard import LOGIN
from wizardlab import auth
from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.login_limits import LoginLimiter
from wizardlab.store import Store

log = logging.getLogger("wizardlab.ui")
_SCRYPT_SLOTS = None  # anyio.CapacityLimiter(1), made in the event loop on the first login
CURATING_ROLES = ("admin", "curator")


@dataclass
class AppContext:
    settings: Settings

    def store(self) -> Store:
        """A Store for the calling thread (connections are per thread inside Store)."""
        if not hasattr(self, "_store"):
            self._store = Store(self.settings.db)
        return self._store

    @property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def log_dir(self) -> Path:
        """Where background jobs write their logs (`<data dir>/logs`)."""
        return self.data_dir.resolve() / "logs"

    # -- login (issue 12: limits live in eval_ui/login_guard.py and wizardlab/login_limits.py) ----------
    @property
    def login_limiter(self) -> LoginLimiter:
        """Failed-login limits of this app process (the login guard and the Admin tab share it)."""
        if not hasattr(self, "_login_limiter"):
            self._login_limiter = LoginLimiter()
        return self._login_limiter

    async def authenticate(self, username: str, password: str) -> bool:
        """The `auth=` callable of `launch()`: enabled account and matching password.

        Gradio awaits it inside its event loop, so the scrypt check runs in a worker thread, one
        at a time (a flood of logins takes one core at most, never the event loop). The outcome
        goes to the login guard (`LOGIN`), which counts failures per account and address."""
        global _SCRYPT_SLOTS
        if _SCRYPT_SLOTS is None:
            _SCRYPT_SLOTS = anyio.CapacityLimiter(1)
        result = await anyio.to_thread.run_sync(auth.check_login, self.store(), username, password,
                                                limiter=_SCRYPT_SLOTS)
        outcome = LOGIN.get()
        if outcome is not None:
            outcome["result"] = result
        return result == "ok"

    # -- accounts ---------------------------------------------------------------------

    def user_or_none(self, request: gr.Request | None) -> dict | None:
        """The signed-in, enabled user (id, username, role), or None."""
        username = getattr(request, "username", None) if request is not None else None
        return auth.active_user(self.store(), username)

    def current_user(self, request: gr.Request | None) -> dict:
        user = self.user_or_none(request)
        if user is None:
            raise popup_error("Please log in again: your session has ended or your account is disabled.")
        return user

    def require_admin(self, request: gr.Request | None) -> dict:
        user = self.current_user(request)
        if user["role"] != "admin":
            raise popup_error("Only admins may do this.", user["username"])
        return user

    def is_admin(self, request: gr.Request | None) -> bool:
        user = self.user_or_none(request)
        return bool(user and user["role"] == "admin")

    # -- curators (Lineage, review queues, a read-only Data tab) -------------------------
    def require_curator(self, request: gr.Request | None) -> dict:
        """The signed-in admin or curator; anyone else (annotators) is refused."""
        user = self.current_user(request)
        if user["role"] not in CURATING_ROLES:
            raise popup_error("Only curators and admins may do this.", user["username"])
        return user

    def can_curate(self, request: gr.Request | None) -> bool:
        user = self.user_or_none(request)
        return bool(user and user["role"] in CURATING_ROLES)


def popup_error(message, who: str | None = None) -> gr.Error:
    """THE way to build an error pop-up: the text escaped (`render.message`: it may hold a user name or
    a file's field), one log line (an expected error, no traceback), raised by the caller."""
    line = " ".join(str(message).split())
    log.warning("user error%s: %s", f" ({who})" if who else "", line)
    return gr.Error(render.message(line), print_exception=False)


def popup_info(message) -> None:
    """An info pop-up (escaped like `popup_error`)."""
    gr.Info(render.message(message))


def ui_errors(fn):
    """Decorator for callbacks: a `UserError` becomes an escaped one-line pop-up (`popup_error`);
    any other exception keeps its traceback in the server log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise popup_error(str(exc), getattr(fn, "__name__", None)) from None

    wrapper._wl_ui_errors = True
    return wrapper


def parse_id(value, what: str) -> int:
    """A positive whole number typed into an id box, else a `UserError` naming the box."""
    text = str(value if value is not None else "").strip().lstrip("#")
    if not text:
        raise UserError(f"enter the {what}")
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{what} must be a positive whole number, got {str(value)!r}")
    return int(text)


def on_show(fn, outputs, inputs=None, *, on_load: bool = True) -> None:
    """Run `fn` whenever the enclosing tab is selected, and also when the page loads unless
    `on_load=False` (a tab whose view is costly computes nothing until someone opens it).

    Call inside `build_tab` (the tab is the block being built); `fn` must stay silent
    (return `gr.skip()`s) for users who may not see the tab.
    """
    if on_load:
        at_page_load(fn, outputs, inputs)
    tab = gr.context.Context.block
    if isinstance(tab, gr.Tab):
        tab.select(fn, inputs, outputs, api_visibility="private")


def at_page_load(fn, outputs, inputs=None) -> None:
    """Run `fn` when the page loads: inside `PageLoads.gathering()` as part of the page's one
    load event, else (or when it takes inputs) as an event of its own."""
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if PageLoads.current is not None and not inputs and PageLoads.current.add(fn, outputs):
        return
    root = gr.context.Context.root_block
    if root is not None:
        root.load(fn, inputs, outputs, api_visibility="private")


class PageLoads:
    """The page-load work of every tab as one event. Each tab used to add its own `load`, so a
    page load was ~15 events, each with its queue round trip, session lookup and pre/post-
    processing (about half of an admin login's server CPU). One event runs them in turn; a
    part that fails is logged (a `UserError` also pops up) and leaves its outputs as they were,
    so one broken tab does not blank the others. Parts take only the request
    (`fn(request)`); a block is the output of one part only (else the part keeps its own event).
    """

    current: PageLoads | None = None

    def __init__(self):
        self.parts: list[tuple] = []  # (fn, outputs)

    @property
    def outputs(self) -> list:
        return [block for _, outputs in self.parts for block in outputs]

    @classmethod
    @contextlib.contextmanager
    def gathering(cls):
        outer, cls.current = cls.current, cls()
        try:
            yield cls.current
        finally:
            cls.current = outer

    def add(self, fn, outputs: list) -> bool:
        taken = {id(b) for b in self.outputs}
        if any(id(b) in taken for b in outputs) or len({id(b) for b in outputs}) < len(outputs):
            return False
        params = list(inspect.signature(fn).parameters.values())
        if len(params) != 1 or params[0].annotation not in (gr.Request, "gr.Request"):
            return False
        self.parts.append((fn, outputs))
        return True

    def __call__(self, request: gr.Request):
        results: list = []
        for fn, outputs in self.parts:
            name = getattr(fn, "__qualname__", fn)
            try:
                out = fn(request)
            except Exception as exc:  # noqa: BLE001 - one tab's failure must not blank the others
                message = getattr(exc, "message", None) or str(exc)
                if isinstance(exc, (UserError, gr.Error)):
                    log.warning("page load %s: %s", name, message)
                    gr.Warning(render.message(message))
                else:
                    log.exception("page load %s failed", name)
                results.extend(gr.skip() for _ in outputs)
                continue
            if len(outputs) == 1:
                out = [out]
            elif not isinstance(out, (list, tuple)) or len(out) != len(outputs):
                log.error("page load %s returned %r for %d outputs", name, out, len(outputs))
                out = [gr.skip()] * len(outputs)
            results.extend(out)
        return results

    def attach(self, root: gr.Blocks) -> None:
        """Register the gathered parts as `root`'s one load event (none if nothing was gathered)."""
        if not self.parts:
            return

        def page_load(request: gr.Request):
            return self(request)

        # concurrency_limit=None: logins of many annotators do not queue behind one another
        root.load(page_load, None, self.outputs, api_visibility="private", concurrency_limit=None,
                  show_progress="hidden")
