"""`python -m pipeline users`: add, disable, enable, list accounts, change a role and set passwords.

Roles: admin, curator (Lineage, review queues, read-only Data, Judge), annotator (Judge).

Passwords come from `--password`, the WIZARDLAB_NEW_PASSWORD env var, or a prompt; they
are stored salted and hashed (`wizardlab.auth`).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import os

from wizardlab import auth
from wizardlab.errors import UserError
from wizardlab.store.users import ROLES

HELP = "Manage accounts: add, disable, list users, change roles and set passwords."


DB_HELP = "SQLite database (default: settings / WIZARDLAB_DB)"


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help=DB_HELP)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_parsers(sub)
    for action_parser in sub.choices.values():  # --db also after the action: `users add ann --db x.db`
        action_parser.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)


def _add_parsers(sub) -> None:
    add = sub.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="annotator")
    add.add_argument("--password", help="the password (else WIZARDLAB_NEW_PASSWORD, else a prompt)")
    for name, text in (("disable", "disable an account (it can no longer log in)"), ("enable", "enable an account")):
        sub.add_parser(name, help=text).add_argument("username")
    sub.add_parser("list", help="list accounts")
    role = sub.add_parser("role", help="change an account's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    pw = sub.add_parser("passwd", help="set a new password")
    pw.add_argument("username")
    pw.add_argument("--password", help="the new password (else WIZARDLAB_NEW_PASSWORD, else a prompt)")


def _password(args) -> str:
    value = args.password or os.environ.get("WIZARDLAB_NEW_PASSWORD")
    if value:
        return value
    if not sys.stdin.isatty():
        raise UserError("no password given: use --password or WIZARDLAB_NEW_PASSWORD (no terminal to ask on)")
    first = getpass.getpass(f"password for {args.username}: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    store = Store(args.db or Settings.from_env().db)
    if args.action == "list":
        for u in store.list_users():
            print(f"{u['username']:<24} {u['role']:<10} {'disabled' if u['disabled'] else 'active':<9} {u['created_at']}")
    elif args.action == "add":
        auth.add_user(store, args.username, _password(args), args.role)
        print(f"added {args.role} {args.username}")
    elif args.action in ("disable", "enable"):
        auth.set_disabled(store, args.username, args.action == "disable")
        print(f"{args.action}d {args.username}")
    elif args.action == "role":
        auth.set_role(store, args.username, args.role)
        print(f"{args.username} is now {args.role}")
    elif args.action == "passwd":
        auth.set_password(store, args.username, _password(args))
        print(f"password set for {args.username}")
    return 0
