"""The login guard: an ASGI middleware in front of Gradio's `POST /login`.

Gradio's login route calls the `auth=` function with only a name and a password, inside its
event loop. This guard adds what it lacks:

- limits (`wizardlab.login_limits.LoginLimiter`): a locked account or address is answered
  429 at once, without the password being checked (no scrypt time spent);
- the outcome of each check (wrong password, disabled account, success) goes back to the
  limiter with the client address, and is logged with it;
- a disabled account is told so, but only after its right password was given (an outsider
  learns nothing about which accounts exist); everything else stays "Incorrect credentials".

Gradio's login page shows its own line for a 400 ("Incorrect credentials") and nothing for any
other answer: a locked account clicked Login and saw nothing happen. The guard adds a small
script to that page (served to browsers without a session cookie) that shows the `detail` of
the guard's own refusals (429 locked, 403 disabled, 413 too large; marked by a header) above
the form. The script names no endpoint (tests/test_security_http.py looks for their names).

`LOGIN` is the per-request context the guard opens and `AppContext.authenticate` fills in.
"""

from __future__ import annotations

import contextvars
import json
import math
from urllib.parse import parse_qs

from starlette.requests import Request

LOGIN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("wizardlab_login", default=None)
DISABLED = "This account is disabled: ask an admin to enable it."


def _message(status: int, detail: str) -> tuple[int, bytes]:
    return status, json.dumps({"detail": detail}).encode()


MAX_BODY = 64 * 1024  # a login form is a few hundred bytes
LOGIN_CONFIG = b'"auth_required":true'  # how the login page's inline config says what it is
LOGIN_NOTE_SCRIPT = b"""<script>/* WizardLab: say why a login was refused (Gradio shows only its 400) */
(() => {
  const fetch0 = window.fetch.bind(window);
  const note = (text) => {
    let el = document.getElementById("wl-login-note");
    if (!text) { if (el) el.remove(); return; }
    if (!el) {
      el = document.createElement("div");
      el.id = "wl-login-note";
      el.setAttribute("role", "alert");
      el.style.cssText = "position:fixed;top:24px;left:50%;transform:translateX(-50%);z-index:1000;" +
        "max-width:560px;padding:10px 16px;border-radius:8px;background:#fef2f2;color:#991b1b;" +
        "border:1px solid #fecaca;font:14px/1.4 system-ui,sans-serif";
      document.body.appendChild(el);
    }
    el.textContent = text;
  };
  window.fetch = async (input, init) => {
    const res = await fetch0(input, init);
    const url = (typeof input === "string" ? input : (input && input.url) || "").split("?")[0];
    if (/\/login\/?$/.test(url)) {
      let detail = "";
      if (res.headers.get("x-wizardlab-refusal")) {  /* the guard's own answers: locked, disabled, too large */
        try { detail = (await res.clone().json()).detail || ""; } catch (e) { detail = ""; }
        detail = detail || "Login refused.";
      }
      note(detail);
    }
    return res;
  };
})();
</script>"""


async def _read_body(receive) -> bytes | None:
    """The request body, or None when it is larger than any login form."""
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
        if len(body) > MAX_BODY:
            return None
    return body


async def _username(scope, body: bytes) -> str:
    """The `username` field of a urlencoded or multipart login form."""
    headers = dict(scope.get("headers") or [])
    if b"multipart/form-data" in headers.get(b"content-type", b""):
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(scope, replay).form()
        return str(form.get("username") or "").strip()
    return (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()


class LoginGuard:
    """ASGI middleware; `limiter` is a `LoginLimiter`. Other requests pass through untouched."""

    def __init__(self, app, limiter):
        self.app, self.limiter = app, limiter

    async def __call__(self, scope, receive, send):
        if _login_page_request(scope):
            return await self._login_page(scope, receive, send)
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return await self._reply(send, *_message(413, "A login form is smaller than that."))
        username = await _username(scope, body)
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.limiter.wait_seconds(username, address)
        if wait > 0:
            return await self._reply(send, *_message(429, f"Too many failed logins: try again in {math.ceil(wait)} s."))
        outcome = {"result": None}
        token = LOGIN.set(outcome)
        try:
            status, headers, out = await self._call_app(scope, body)
        except BaseException:
            self.limiter.release(username, address)
            raise
        finally:
            LOGIN.reset(token)
        if outcome["result"] == "ok" and status == 200:
            self.limiter.succeeded(username, address)
        elif outcome["result"] not in ("wrong", "disabled"):
            self.limiter.release(username, address)
        else:
            self.limiter.failed(username, address)
            if outcome["result"] == "disabled":
                return await self._reply(send, *_message(403, DISABLED))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    async def _login_page(self, scope, receive, send):
        """The page, with `LOGIN_NOTE_SCRIPT` in its head when it is Gradio's login page."""
        status, headers, body = await _captured(self.app, scope, receive)
        if LOGIN_CONFIG in body and b"</head>" in body:
            body = body.replace(b"</head>", LOGIN_NOTE_SCRIPT + b"</head>", 1)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _call_app(self, scope, body: bytes):
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await _captured(self.app, scope, replay)

    @staticmethod
    async def _reply(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"x-wizardlab-refusal", b"1")]})  # the login page's script shows these
        await send({"type": "http.response.body", "body": body})


def _login_page_request(scope) -> bool:
    """A browser asking for the app's page without a session cookie: it will be served the login page."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    if scope["path"].rstrip("/") != (scope.get("root_path") or "").rstrip("/"):
        return False
    cookies = b"".join(v for k, v in scope.get("headers") or [] if k.lower() == b"cookie")
    return b"access-token" not in cookies


async def _captured(app, scope, receive) -> tuple[int, list, bytes]:
    """`app`'s whole answer to one request: (status, headers, body)."""
    start, chunks = {}, []

    async def capture(message):
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)
