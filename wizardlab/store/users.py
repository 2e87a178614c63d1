"""Accounts: users, roles and password hashes (the hashing itself lives in `wizardlab.auth`)."""

from __future__ import annotations

import sqlite3

from wizardlab.errors import UserError

ROLES = ("admin", "curator", "annotator")  # curators: Lineage, a read-only Data tab, Judge
_COLUMNS = "id, username, role, disabled, created_at"


class UserQueries:
    def create_user(self, username: str, password_hash: str, role: str) -> int:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        try:
            with self.tx() as conn:
                cur = conn.execute("INSERT INTO users (username, password_hash, role) VALUES (?, ?, ?)",
                                   (username, password_hash, role))
                return cur.lastrowid
        except sqlite3.IntegrityError:
            raise UserError(f"user {username!r} already exists") from None

    def get_user(self, username: str) -> dict | None:
        """The user without the password hash, or None."""
        return self.query_one(f"SELECT {_COLUMNS} FROM users WHERE username = ?", (username,))

    def password_hash(self, username: str) -> str | None:
        return self.scalar("SELECT password_hash FROM users WHERE username = ? AND disabled = 0", (username,))

    def login_row(self, username: str) -> dict | None:
        """{password_hash, disabled} of an account (disabled ones too), for the login check only."""
        return self.query_one("SELECT password_hash, disabled FROM users WHERE username = ?", (username,))

    def list_users(self) -> list[dict]:
        return self.query(f"SELECT {_COLUMNS} FROM users ORDER BY role, username")

    def count_users(self, role: str | None = None, active_only: bool = False) -> int:
        sql, params = "SELECT count(*) FROM users WHERE 1=1", []
        if role:
            sql += " AND role = ?"
            params.append(role)
        if active_only:
            sql += " AND disabled = 0"
        return self.scalar(sql, tuple(params))

    def set_user_password_hash(self, username: str, password_hash: str) -> None:
        self._update_user(username, "password_hash = ?", (password_hash,))

    def set_user_disabled(self, username: str, disabled: bool) -> None:
        self._update_user(username, "disabled = ?", (1 if disabled else 0,))

    def set_user_role(self, username: str, role: str) -> None:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self._update_user(username, "role = ?", (role,))

    def _update_user(self, username: str, assignment: str, params: tuple) -> None:
        with self.tx() as conn:
            cur = conn.execute(f"UPDATE users SET {assignment} WHERE username = ?", (*params, username))
            if cur.rowcount == 0:
                raise UserError(f"no user named {username!r}")
