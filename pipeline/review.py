"""`python -m pipeline review`: human review of elimination, with agreement on the decisions.

    review create --run 3 --name r2-nig --round 2 --rule no_information_gain --sample 300 --k 2
    review list
    review answer --task r2-nig --curator cora --node 128 --verdict keep     # scripted answers
    review report --task r2-nig [--policy majority] [--json]
    review apply  --task r2-nig --policy majority|unanimous [--dry-run]
    review conflicts --campaign 2 --runs 3 4     # judges who also curated an arm's data

Curators answer in the app (Lineage tab, Review queue). `apply` writes audited overrides,
once per task; the report gives curator agreement and per-rule precision (`wizardlab.review`).
"""

from __future__ import annotations

import argparse
import getpass
import json

from wizardlab import curation

HELP = "Review tasks: curators check eliminations; agreement and per-rule precision; apply as overrides."
DB_HELP = "SQLite database (default: settings / WIZARDLAB_DB)"


def add_arguments(parser) -> None:
    from wizardlab.review import POLICIES, VERDICTS

    parser.add_argument("--db", default=None, help=DB_HELP)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="a review task over the evolutions of a run matching filters")
    create.add_argument("--run", type=int, required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--round", type=int)
    create.add_argument("--rule", choices=curation.RULES)
    create.add_argument("--operation", choices=curation.OPERATIONS)
    create.add_argument("--status", choices=curation.STATUSES, help="effective status now")
    create.add_argument("--text", help="substring of instruction, input or response")
    create.add_argument("--sample", type=int, help="a random sample of this many nodes (seeded)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--k", type=int, default=2, help="curators per node (default 2)")
    sub.add_parser("list", help="list review tasks with their progress")
    ans = sub.add_parser("answer", help="record one curator's verdict on one node (scripts, imports)")
    ans.add_argument("--task", required=True)
    ans.add_argument("--curator", required=True)
    ans.add_argument("--node", type=int, required=True)
    ans.add_argument("--verdict", choices=VERDICTS, required=True)
    rep = sub.add_parser("report", help="agreement between curators and per-rule precision")
    rep.add_argument("--task", required=True)
    rep.add_argument("--policy", choices=POLICIES, default="majority")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    app = sub.add_parser("apply", help="write the decided verdicts as audited overrides (once per task)")
    app.add_argument("--task", required=True)
    app.add_argument("--policy", choices=POLICIES, required=True)
    app.add_argument("--user", default=None, help="who applies (default: the login name)")
    app.add_argument("--dry-run", action="store_true", help="only count")
    con = sub.add_parser("conflicts", help="annotators of a campaign who also curated its arms' evolution runs")
    con.add_argument("--campaign", required=True, help="campaign name or id")
    con.add_argument("--runs", type=int, nargs="+", required=True, metavar="RUN",
                     help="the evolution runs the campaign's arms were trained on")
    for action_parser in sub.choices.values():
        action_parser.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)


def main(args) -> int:
    from wizardlab import review
    from wizardlab.config import Settings
    from wizardlab.store import Store

    store = Store(args.db or Settings.from_env().db)
    if args.action == "create":
        filters = curation.Filters.parse(text=args.text, round=args.round, operation=args.operation,
                                         status=args.status, rule=args.rule)
        t = review.create_task(store, args.run, args.name, filters, k=args.k, sample=args.sample, seed=args.seed,
                               user=getpass.getuser())
        print(f"review task #{t['id']} {t['name']!r}: {t['n_items']} nodes, k={t['k']} ({filters.describe()})")
    elif args.action == "list":
        for t in store.list_review_tasks():
            print(f"#{t['id']:<4} {t['name']:<28} run {t['run_id']:<4} k={t['k']} {t['n_items']:>5} nodes "
                  f"{t['n_verdicts']:>6} verdicts {t['n_curators']:>3} curators  {t['status']}")
    elif args.action == "answer":
        review.answer_node(store, args.task, args.curator, args.node, args.verdict)
        print(f"{args.curator}: {args.verdict} on node {args.node}")
    elif args.action == "report":
        rep = review.report(store, args.task, args.policy)
        print(json.dumps(rep, ensure_ascii=False, default=str) if args.json else review.render_text(rep))
    elif args.action == "conflicts":
        rows = review.campaign_conflicts(store, args.campaign, args.runs)
        for r in rows:
            print(f"FLAG {r['annotator']}: {r['judgments']} judgments; curated runs {args.runs}: "
                  f"{r['overrides']} overrides, {r['verdicts']} review verdicts")
        print(f"{len(rows)} annotator(s) flagged")
    elif args.action == "apply":
        s = review.apply(store, args.task, args.policy, args.user or getpass.getuser(), dry_run=args.dry_run)
        verb = "would write" if args.dry_run else "wrote"
        print(f"{verb} {s['overrides']} override(s) ({s['restore']} restore, {s['eliminate']} eliminate) from "
              f"{s['decided']} decided of {s['items']} nodes ({s['policy']})")
    return 0
