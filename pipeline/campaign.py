"""`python -m pipeline campaign`: create, list and inspect blind pairwise judging campaigns.

    campaign create --name NAME --sets SET SET [SET ...] [--pairs one|all] [--k 3]
                    [--guidelines FILE.md] [--both-bad] [--rationale] [--attention N] [--seed S]
                    [--gold 0.1] [--repeats 0.1] [--gold-threshold 0.7] [--routing order|widest]
    campaign list
    campaign leaks CAMPAIGN [--json]  (answers naming a model or vendor, found at creation)
    campaign resolve CAMPAIGN HIT --edit FILE | --drop | --keep
                                    (the campaign opens to annotators once no hit is left open)
    campaign pause|resume CAMPAIGN --annotator NAME
                                    (a paused rater's open items go back to the pool)
    campaign status CAMPAIGN        (per-annotator progress, items filled to k)
    campaign release CAMPAIGN [--older-than 30]   (free items held by annotators who left)
    campaign assign CAMPAIGN --annotators alice,bob [--password PW]
                                    (create annotator accounts that do not exist yet)
    campaign close|open CAMPAIGN
    campaign plan --margin 0.1 --tie-rate 0.3 [--k 3] [--icc 0.2] [--power 0.8] [--alpha 0.05]
                                    (items and judgments needed; see wizardlab.evaluation.trust.plan)
Output sets and campaigns are named or numbered.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wizardlab import evaluation
from wizardlab.errors import UserError

HELP = "Create and inspect blind pairwise judging campaigns."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a campaign from two or more output sets")
    c.add_argument("--name", required=True)
    c.add_argument("--sets", nargs="+", required=True, help="output set ids or names (2 or more)")
    c.add_argument("--pairs", choices=("one", "all"), default="one", help="first two sets only, or all pairs")
    c.add_argument("--k", type=int, default=3, help="annotators per item (default 3)")
    c.add_argument("--guidelines", default=None, help="Markdown file with guidelines (default: built-in)")
    c.add_argument("--both-bad", action="store_true", help="offer a 'both bad' label")
    c.add_argument("--rationale", action="store_true", help="ask for an optional rationale")
    c.add_argument("--attention", type=int, default=0, help="number of attention-check items")
    c.add_argument("--seed", type=int, default=0, help="seed for item order and left/right")
    c.add_argument("--gold", type=float, default=0.0, metavar="SHARE",
                   help="share of gold items (a real answer against a degraded one), e.g. 0.1")
    c.add_argument("--repeats", type=float, default=0.0, metavar="SHARE",
                   help="share of items shown again to the same rater with the sides swapped")
    c.add_argument("--gold-threshold", type=float, default=0.7, help="pause a rater below this gold accuracy")
    c.add_argument("--routing", choices=("order", "widest"), default="order",
                   help="next items in order, or from the pair with the widest interval")
    lk = sub.add_parser("leaks", help="identity leaks found when the campaign was created")
    lk.add_argument("campaign")
    lk.add_argument("--json", action="store_true")
    rs = sub.add_parser("resolve", help="edit, drop or keep one identity leak")
    rs.add_argument("campaign")
    rs.add_argument("hit", type=int)
    how = rs.add_mutually_exclusive_group(required=True)
    how.add_argument("--edit", metavar="FILE", help="a text file with the answer's new text")
    how.add_argument("--drop", action="store_true", help="remove the campaign's items showing this answer")
    how.add_argument("--keep", action="store_true", help="a false alarm: keep the answer as it is")
    for name in ("pause", "resume"):
        pr = sub.add_parser(name, help=f"{name} a rater on a campaign")
        pr.add_argument("campaign")
        pr.add_argument("--annotator", required=True)
    sub.add_parser("list", help="list campaigns")
    for name in ("status", "close", "open"):
        p = sub.add_parser(name)
        p.add_argument("campaign")
        if name == "status":
            p.add_argument("--json", action="store_true")
    r = sub.add_parser("release", help="free open assignments nobody judged (annotators who left)")
    r.add_argument("campaign")
    r.add_argument("--older-than", type=float, default=30.0, metavar="MINUTES", help="default 30")
    pl = sub.add_parser("plan", help="how many items and judgments a campaign needs for a given power")
    pl.add_argument("--margin", type=float, required=True, help="expected P(first wins) - P(second wins) per vote")
    pl.add_argument("--tie-rate", type=float, default=0.0, help="expected share of tie votes (default 0)")
    pl.add_argument("--k", type=int, default=3, help="judgments per item (default 3)")
    pl.add_argument("--icc", type=float, default=0.0, help="correlation of two votes on one item (default 0)")
    pl.add_argument("--power", type=float, default=0.8)
    pl.add_argument("--alpha", type=float, default=0.05)
    pl.add_argument("--json", action="store_true")
    a = sub.add_parser("assign", help="create annotator accounts for a campaign")
    a.add_argument("campaign")
    a.add_argument("--annotators", required=True, help="comma-separated user names")
    a.add_argument("--password", default=None, help="password for new accounts (default: printed random)")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    if args.action == "plan":
        return _plan(args)
    store = Store(Settings.from_env(db=args.db).db)
    return {"create": _create, "list": _list, "status": _status, "assign": _assign, "release": _release,
            "close": _set_status, "open": _set_status, "leaks": _leaks, "resolve": _resolve, "pause": _rater,
            "resume": _rater}[args.action](store, args)


def _create(store, args) -> int:
    guidelines = evaluation.DEFAULT_GUIDELINES
    if args.guidelines:
        path = Path(args.guidelines)
        if not path.is_file():
            raise UserError(f"{path}: no such guidelines file")
        guidelines = path.read_text(encoding="utf-8")
    cid = evaluation.create_campaign(store, args.name, args.sets, pairs=args.pairs, k=args.k, guidelines=guidelines,
                                     allow_both_bad=args.both_bad, attention_checks=args.attention,
                                     rationale=args.rationale, seed=args.seed, gold_share=args.gold,
                                     repeat_share=args.repeats, gold_threshold=args.gold_threshold,
                                     routing=args.routing)
    c = store.campaign(cid)
    n = len(store.campaign_items(cid, include_attention=True))
    print(f"campaign {cid} {c['name']!r}: {n} items ({c['config']['n_common_prompts']} common prompts), k={c['k']}")
    hits = store.identity_hits(cid)
    if hits:
        print(f"held for review: {len(hits)} answers name a model or vendor; see `campaign leaks {cid}` and "
              f"`campaign resolve {cid} HIT --edit FILE|--drop|--keep`")
    return 0


def _leaks(store, args) -> int:
    c = evaluation.require_campaign(store, args.campaign)
    hits = store.identity_hits(c["id"])
    if args.json:
        print(json.dumps(hits, ensure_ascii=False))
        return 0
    print(f"campaign {c['id']} {c['name']!r} [{c['status']}]: {sum(h['status'] == 'open' for h in hits)} open of "
          f"{len(hits)} identity leaks")
    for h in hits:
        print(f"  #{h['id']} [{h['status']}] {h['model']} (output {h['output_id']}): {h['match']!r} in "
              f"{h['context'][:160]!r}")
    return 0


def _resolve(store, args) -> int:
    text = None
    if args.edit:
        path = Path(args.edit)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        text = path.read_text(encoding="utf-8")
    action = "edit" if args.edit else "drop" if args.drop else "keep"
    out = evaluation.resolve_identity(store, args.campaign, args.hit, action, text=text)
    print(f"hit {args.hit} {out['status']}; {out['open_left']} open left; campaign is {out['campaign_status']}")
    return 0


def _rater(store, args) -> int:
    status = "paused" if args.action == "pause" else "active"
    n = evaluation.set_rater(store, args.campaign, args.annotator, status,
                             reason="paused by the lead" if status == "paused" else None)
    print(f"{args.annotator}: {status}" + (f", {n} open items back to the pool" if status == "paused" else ""))
    return 0


def _list(store, args) -> int:
    for c in store.list_campaigns():
        print(f"{c['id']:4d}  {c['name']}  [{c['status']}]  items={c['n_items']}  k={c['k']}  "
              f"judgments={c['n_judgments']}")
    return 0


def _status(store, args) -> int:
    c = evaluation.require_campaign(store, args.campaign)
    status = {"campaign": c["name"], "fill": store.campaign_fill(c["id"]), "annotators": store.campaign_progress(c["id"]),
              "pairs": store.campaign_pairs(c["id"])}
    if args.json:
        print(json.dumps(status, default=str))
        return 0
    print(f"campaign {c['id']} {c['name']!r} [{c['status']}], k={c['k']}")
    print("items by number of human judgments: " + ", ".join(f"{k}: {v}" for k, v in status["fill"].items()))
    for a in status["annotators"]:
        secs = "n/a" if a["mean_seconds"] is None else f"{a['mean_seconds']:.1f}s"
        print(f"  {a['annotator']}: done {a['done']}, skipped {a['skipped']}, open {a['open']}, mean {secs}")
    return 0


def _assign(store, args) -> int:
    for row in evaluation.assign_annotators(store, args.campaign, args.annotators, args.password):
        if not row["created"]:
            print(f"{row['username']}: account exists")
        else:
            print(f"{row['username']}: created" + ("" if args.password else f" with password {row['password']}"))
    return 0


def _release(store, args) -> int:
    c = evaluation.require_campaign(store, args.campaign)
    n = store.release_open_assignments(c["id"], args.older_than * 60)
    print(f"released {n} open assignments older than {args.older_than:g} minutes")
    return 0


def _set_status(store, args) -> int:
    c = evaluation.set_status(store, args.campaign, "closed" if args.action == "close" else "open")
    print(f"campaign {c['id']} is now {c['status']}")
    return 0


def _plan(args) -> int:
    from wizardlab.evaluation import trust

    try:
        p = trust.plan(args.margin, args.tie_rate, args.k, icc=args.icc, alpha=args.alpha, power=args.power)
    except ValueError as exc:
        raise UserError(f"campaign plan: {exc}") from None
    if args.json:
        print(json.dumps(p))
        return 0
    print(f"{p['n_items']} items x k={args.k} = {p['n_judgments']} judgments ({p['n_nontie_votes']} non-tie votes, "
          f"design effect {p['design_effect']:.2f}) detect a margin of {args.margin:+.2f} with power {args.power:g} "
          f"at alpha {args.alpha:g} (two-sided sign test on the non-tie votes)")
    return 0
