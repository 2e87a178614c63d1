"""Accounts and passwords: salted scrypt hashes, the first admin, and user management.

Hashes are `scrypt$n$r$p$salt_hex$hash_hex` (standard library `hashlib.scrypt`) and are
compared in constant time. This module knows nothing of Gradio; the app asks
`authenticate()` at login and `active_user()` on every request, so a disabled account
loses access at once, even with a live session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets

from wizardlab.errors import UserError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
ADMIN_ENV = "WIZARDLAB_ADMIN_PASSWORD"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches the stored hash; False for any malformed hash."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
                                dklen=len(digest_hex) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def check_username(username: str) -> str:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise UserError(f"username {username!r}: use 2-64 letters, digits or . _ @ -")
    return username


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    return password


def add_user(store, username: str, password: str, role: str = "annotator") -> int:
    return store.create_user(check_username(username), hash_password(check_password(password)), role)


def set_password(store, username: str, password: str) -> None:
    store.set_user_password_hash(username, hash_password(check_password(password)))


def set_disabled(store, username: str, disabled: bool, *, acting_user: str | None = None) -> None:
    """Disable or enable an account; refuses to lock out the last active admin or yourself."""
    user = store.get_user(username)
    if user is None:
        raise UserError(f"no user named {username!r}")
    if disabled and acting_user == username:
        raise UserError("you cannot disable your own account")
    if disabled and user["role"] == "admin" and not user["disabled"] and store.count_users("admin", True) <= 1:
        raise UserError("cannot disable the last active admin")
    store.set_user_disabled(username, disabled)


def set_role(store, username: str, role: str, *, acting_user: str | None = None) -> None:
    """Change an account's role (admin, curator, annotator); never your own, never the last active admin."""
    user = store.get_user(username)
    if user is None:
        raise UserError(f"no user named {username!r}")
    if acting_user == username and role != user["role"]:
        raise UserError("you cannot change your own role")
    if user["role"] == "admin" and role != "admin" and not user["disabled"] \
            and store.count_users("admin", True) <= 1:
        raise UserError("cannot change the role of the last active admin")
    store.set_user_role(username, role)


def authenticate(store, username: str, password: str) -> bool:
    """Login check: the account exists, is enabled, and the password matches."""
    stored = store.password_hash((username or "").strip())
    if stored is None:
        hash_password(password or "")  # same work either way: no timing hint about which names exist
        return False
    return verify_password(password or "", stored)


def check_login(store, username: str, password: str) -> str:
    """The login check with its outcome: "ok", "wrong" (no such account or a wrong password, alike and
    in the same time) or "disabled" (the right password of a disabled account: only its owner learns
    that). Rate limits are `wizardlab.login_limits`; this function always does the scrypt work."""
    row = store.login_row((username or "").strip())
    if row is None:
        hash_password(password or "")  # same work either way: no timing hint about which names exist
        return "wrong"
    if not verify_password(password or "", row["password_hash"]):
        return "wrong"
    return "disabled" if row["disabled"] else "ok"


def active_user(store, username: str | None) -> dict | None:
    """The enabled account called `username` (id, username, role), or None."""
    if not username:
        return None
    user = store.get_user(username)
    if user is None or user["disabled"]:
        return None
    return {"id": user["id"], "username": user["username"], "role": user["role"]}


def ensure_admin(store, env: dict | None = None) -> str | None:
    """On first start (no admin yet) create `admin`; returns the password when it was generated.

    The password comes from WIZARDLAB_ADMIN_PASSWORD when set (then None is returned, nothing
    to print); otherwise it is generated here and returned so the caller prints it once.
    """
    if store.count_users("admin") > 0:
        return None
    env = os.environ if env is None else env
    given = env.get(ADMIN_ENV)
    password = given or secrets.token_urlsafe(12)
    add_user(store, "admin", password, "admin")
    return None if given else password
