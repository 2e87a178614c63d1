"""`python -m pipeline experiment`: compare arms (recipe + base model + preset) from data to verdict.

    experiment create NAME --arm NAME=RECIPE[:MODEL[:PRESET]] --arm ... --testset T [--testset-file F]
                      [--base-model tiny-llama] [--preset cpu-smoke] [--train max_steps=20 ...]
                      [--pairs all|baseline] [--baseline ARM|SET] [--k 1] [--external SET ...]
                      [--max-tokens N] [--judge-base-url URL --judge-model NAME] [--out DIR]
    experiment launch NAME [--wait]  (queues export -> train -> generate per arm, then the campaign)
    experiment status NAME [--json]
    experiment retry NAME --arm ARM  (start a failed arm again from its failed step)
    experiment cancel NAME
    experiment list
    experiment report NAME [--json] [--csv DIR] [--html FILE]
Everything runs as jobs (`python -m pipeline runs` lists them); the driver resumes after a restart.
"""

from __future__ import annotations

import argparse
import json
import time

from wizardlab import experiments
from wizardlab.errors import UserError

HELP = "Experiments: arms (recipe + base model + preset) trained, generated and judged blind; their report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    sub = parser.add_subparsers(dest="action", required=True)
    _create_arguments(sub.add_parser("create", help="define an experiment and its arms"))
    la = sub.add_parser("launch", help="start the experiment's jobs")
    la.add_argument("name")
    la.add_argument("--wait", action="store_true", help="follow it until it ends")
    for name in ("status", "cancel", "report"):
        p = sub.add_parser(name)
        p.add_argument("name")
        if name in ("status", "report"):
            p.add_argument("--json", action="store_true")
    rep = sub.choices["report"]
    rep.add_argument("--csv", default=None, metavar="DIR", help="write the report's tables as CSV files")
    rep.add_argument("--html", default=None, metavar="FILE", help="write one self-contained HTML page")
    r = sub.add_parser("retry", help="start a failed arm again from its failed step")
    r.add_argument("name")
    r.add_argument("--arm", required=True)
    sub.add_parser("list", help="list experiments")
    d = sub.add_parser("drive", help=argparse.SUPPRESS)  # the driver job
    d.add_argument("experiment_id", type=int)


def _create_arguments(c) -> None:
    c.add_argument("name")
    c.add_argument("--arm", action="append", required=True, metavar="NAME=RECIPE[:MODEL[:PRESET]]")
    c.add_argument("--testset", required=True, help="stored test set (or the name for --testset-file)")
    c.add_argument("--testset-file", default=None, help="import this test set file first")
    c.add_argument("--base-model", default="tiny-llama", help="base model of arms that name none")
    c.add_argument("--preset", default="cpu-smoke", help="training preset of arms that name none")
    c.add_argument("--train", nargs="+", default=[], metavar="KEY=VALUE", help="training settings for every arm")
    c.add_argument("--pairs", choices=experiments.PAIRS, default="all")
    c.add_argument("--baseline", default=None, help="with --pairs baseline: an arm or an external output set")
    c.add_argument("--k", type=int, default=1, help="annotators per item (default 1)")
    c.add_argument("--external", nargs="+", default=[], metavar="SET", help="output sets compared with the arms")
    c.add_argument("--max-tokens", type=int, default=None, help="generation: max new tokens per answer")
    c.add_argument("--judge-base-url", default=None, help="LLM judge endpoint (optional)")
    c.add_argument("--judge-model", default=None)
    c.add_argument("--out", default=None, help="directory for exports, checkpoints and logs")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    settings = Settings.from_env(db=args.db)
    store = Store(settings.db)
    return {"create": _create, "launch": _launch, "status": _status, "cancel": _cancel, "retry": _retry,
            "list": _list, "report": _report, "drive": _drive}[args.action](store, settings, args)


def parse_settings(pairs: list[str]) -> dict:
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--train {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _create(store, settings, args) -> int:
    if args.testset_file:
        from wizardlab.evaluation import import_testset

        import_testset(store, args.testset_file, args.testset)
    config = experiments.ExperimentConfig(
        testset=args.testset, pairs=args.pairs, baseline=args.baseline, k=args.k, external_sets=args.external,
        train=parse_settings(args.train), max_tokens=args.max_tokens, judge_base_url=args.judge_base_url,
        judge_model=args.judge_model, out_dir=args.out)
    arms = [experiments.parse_arm(a, args.base_model, args.preset) for a in args.arm]
    exp_id = experiments.create_experiment(store, args.name, arms, config, data_dir=settings.data_dir,
                                           cache_dir=settings.cache_dir)
    print(f"experiment {exp_id} {args.name!r}: {len(arms)} arms; launch: python -m pipeline experiment launch {exp_id}")
    return 0


def _launch(store, settings, args) -> int:
    print(f"experiment {args.name}: driver {experiments.launch(store, args.name)}")
    if not args.wait:
        return 0
    while (view := experiments.status(store, args.name))["status"] == "running":
        time.sleep(5)
    _print_status(view)
    return 0 if view["status"] == "done" else 1


def _status(store, settings, args) -> int:
    view = experiments.status(store, args.name)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        _print_status(view)
    return 0


def _print_status(view: dict) -> None:
    print(f"experiment {view['id']} {view['name']!r}: {view['status']}"
          + (f" (campaign {view['campaign_id']})" if view["campaign_id"] else "")
          + (f"\n  {view['error']}" if view["error"] else ""))
    for a in view["arms"]:
        print(f"  {a['name']:<16} {a['recipe']:<16} {a['step']:<9} {a['status']:<9} {a['rows'] or '':>6} rows "
              f"{a['progress']}" + (f"  {a['error'].splitlines()[0]}" if a["error"] else ""))


def _cancel(store, settings, args) -> int:
    experiments.cancel(store, args.name)
    print(f"experiment {args.name}: cancelled")
    return 0


def _retry(store, settings, args) -> int:
    print(f"experiment {args.name}, arm {args.arm}: {experiments.retry(store, args.name, args.arm)}")
    return 0


def _list(store, settings, args) -> int:
    for e in store.list_experiments():
        print(f"{e['id']:>4}  {e['name']:<28} {e['status']:<10} campaign {e['campaign_id'] or '-'}")
    return 0


def _report(store, settings, args) -> int:
    from wizardlab.evaluation import experiment_report as er

    rep = er.build(store, args.name)
    if args.csv:
        for path in er.write_csv(rep, args.csv):
            print(f"wrote {path}")
    if args.html:
        print(f"wrote {er.write_html(rep, args.html)}")
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    elif not (args.csv or args.html):
        print(er.render_text(rep))
    return 0


def _drive(store, settings, args) -> int:
    from wizardlab.jobs import current_job_id

    run_id = current_job_id()
    if run_id is None:
        raise UserError("experiment drive runs as a job: use `experiment launch`")
    view = experiments.drive(store, args.experiment_id, run_id, settings)
    print(f"experiment {view['name']!r}: {view['status']}")
    return 0 if view["status"] in ("done", "cancelled") else 1
