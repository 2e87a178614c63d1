"""`python -m pipeline override`: restore or eliminate nodes by hand, audited; or undo an override.

One node (`--node`) or every node of a run matching a filter (`--run` with `--round`,
`--rule`, `--operation`, `--status`, `--text`); `--dry-run` only counts. All writes go
through `wizardlab.curation`, in one transaction.
"""

from __future__ import annotations

import getpass

from wizardlab import curation
from wizardlab.errors import UserError

HELP = "Restore or eliminate nodes by hand, audited; or undo an override."


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--node", type=int, help="one node id")
    target.add_argument("--run", type=int, help="a run id: override every node matching the filters")
    target.add_argument("--undo", type=int, nargs="+", metavar="OVERRIDE_ID", help="undo these overrides")
    parser.add_argument("--round", type=int)
    parser.add_argument("--rule", choices=curation.RULES)
    parser.add_argument("--operation", choices=curation.OPERATIONS)
    parser.add_argument("--status", choices=curation.STATUSES, help="effective status before the override")
    parser.add_argument("--text", help="substring of instruction, input or response")
    parser.add_argument("--truncated", action="store_true", help="only nodes whose response hit the token limit")
    parser.add_argument("--action", choices=curation.ACTIONS)
    parser.add_argument("--reason", help="why (stored in the audit log)")
    parser.add_argument("--user", default=None, help="who decides (default: the login name)")
    parser.add_argument("--dry-run", action="store_true", help="only count the nodes a bulk override would change")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    store = Store(args.db or Settings.from_env().db)
    user = args.user or getpass.getuser()
    if args.undo:
        with store.tx():  # all undone or none
            for override_id in args.undo:
                curation.undo(store, override_id, user)
        print(f"undid {len(args.undo)} override(s)")
        return 0
    if not args.action:
        raise UserError("--action restore|eliminate is required")
    if args.node is not None:
        curation.override_node(store, args.node, args.action, args.reason or "", user)
        print(f"{args.action}: node {args.node}")
        return 0
    filters = curation.Filters.parse(text=args.text, round=args.round, operation=args.operation,
                                     status=args.status, rule=args.rule, truncated=args.truncated)
    if args.dry_run:
        n = curation.preview_bulk(store, args.run, filters, args.action)
        print(f"would {args.action} {n} node(s) of run {args.run} ({filters.describe()})")
        return 0
    n = curation.bulk_override(store, args.run, filters, args.action, args.reason or "", user)
    print(f"{args.action}: {n} node(s) of run {args.run} ({filters.describe()})")
    return 0
