"""Accounts: hashing, first admin, disabling, and the `users` CLI."""

from __future__ import annotations

import pytest

from pipeline.__main__ import main as cli
from wizardlab import auth
from wizardlab.errors import UserError


def test_hash_is_salted_and_verifies():
    a, b = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert a != b and a.startswith("scrypt$") and "correct" not in a
    assert auth.verify_password("correct horse", a) and auth.verify_password("correct horse", b)
    assert not auth.verify_password("correct hors", a)
    assert not auth.verify_password("x", "scrypt$broken") and not auth.verify_password("x", None)


def test_first_admin_generated_or_from_env(tmp_path):
    from wizardlab.store import Store

    s1 = Store(tmp_path / "a.db")
    pw = auth.ensure_admin(s1, {})
    assert pw and auth.authenticate(s1, "admin", pw)
    assert auth.ensure_admin(s1, {}) is None  # only on first start
    s2 = Store(tmp_path / "b.db")
    assert auth.ensure_admin(s2, {auth.ADMIN_ENV: "from-env-pw"}) is None
    assert auth.authenticate(s2, "admin", "from-env-pw") and not auth.authenticate(s2, "admin", pw)
    assert "password" not in s2.get_user("admin") and "password_hash" not in s2.get_user("admin")


def test_disabled_user_cannot_log_in_and_last_admin_is_protected(store):
    auth.ensure_admin(store, {auth.ADMIN_ENV: "admin-pw-123"})
    auth.add_user(store, "ann", "ann-pw-123", "annotator")
    assert auth.authenticate(store, "ann", "ann-pw-123")
    assert auth.active_user(store, "ann")["role"] == "annotator"
    auth.set_disabled(store, "ann", True)
    assert not auth.authenticate(store, "ann", "ann-pw-123") and auth.active_user(store, "ann") is None
    with pytest.raises(UserError, match="last active admin"):
        auth.set_disabled(store, "admin", True)
    with pytest.raises(UserError, match="own account"):
        auth.set_disabled(store, "admin", True, acting_user="admin")
    with pytest.raises(UserError, match="already exists"):
        auth.add_user(store, "ann", "another-pw", "annotator")
    with pytest.raises(UserError, match="at least 8"):
        auth.add_user(store, "bob", "short", "annotator")
    with pytest.raises(UserError, match="username"):
        auth.add_user(store, "<script>", "long-enough", "annotator")
    with pytest.raises(UserError, match="role"):
        auth.add_user(store, "bob", "long-enough", "boss")


def test_users_cli(store, capsys):
    db = store.path
    assert cli(["users", "--db", db, "add", "ann", "--password", "ann-pw-123"]) == 0
    assert cli(["users", "--db", db, "add", "lead", "--role", "admin", "--password", "lead-pw-123"]) == 0
    assert cli(["users", "disable", "ann", "--db", db]) == 0
    assert not auth.authenticate(store, "ann", "ann-pw-123")
    assert cli(["users", "--db", db, "enable", "ann"]) == 0
    assert cli(["users", "--db", db, "passwd", "ann", "--password", "new-pw-456"]) == 0
    assert auth.authenticate(store, "ann", "new-pw-456") and not auth.authenticate(store, "ann", "ann-pw-123")
    capsys.readouterr()
    assert cli(["users", "--db", db, "list"]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "annotator" in out and "lead" in out and "pw" not in out
    assert cli(["users", "--db", db, "disable", "nobody"]) == 2
    assert "no user named 'nobody'" in capsys.readouterr().err
