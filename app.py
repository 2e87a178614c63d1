"""Start the WizardLab app: `python app.py [--db PATH] [--host H] [--port P] [--base-url URL --model NAME]`.

Parses flags, builds the settings and the context, makes sure an admin account exists,
marks vanished jobs failed, relaunches the drivers of interrupted experiments, and hands
over to `eval_ui.app`. Heavy libraries (torch, transformers) are not imported here and no
LLM is loaded into this process: every LLM task runs as a job in its own process. When
the embedded model is the configured LLM and has not been converted yet, a child process
converts it while people log in.
"""

from __future__ import annotations

import argparse
import sys

from wizardlab.errors import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="WizardLab: evolve, curate, train and judge.")
    p.add_argument("--db", help="SQLite file (default: wizardlab.db or WIZARDLAB_DB)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--base-url", action="append",
                   help="OpenAI-compatible endpoint; none = the embedded small model; give it several times "
                   "for a pool: URL[,model=NAME][,weight=W]")
    p.add_argument("--model", help="model name at the endpoint")
    p.add_argument("--data-dir", help="where logs, exports and checkpoints go (default wizardlab_data)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--backup-every", type=float, default=0, metavar="MINUTES",
                   help="back up the database every MINUTES into <data dir>/backups (default: off)")
    p.add_argument("--backup-keep", type=int, default=7, metavar="N", help="scheduled backups to keep (default 7)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from eval_ui.app import build_app, launch
    from eval_ui.context import AppContext
    from wizardlab import auth, experiments, jobs
    from wizardlab.config import Settings

    try:
        settings = Settings.from_env(db=args.db, host=args.host, port=args.port, base_url=args.base_url,
                                     model=args.model, data_dir=args.data_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ctx = AppContext(settings)
    store = ctx.store()
    password = auth.ensure_admin(store)
    if password:
        print(f"\nCreated the first admin account.  user: admin   password: {password}\n"
              "Write it down: it is shown only this once (change it in the Admin tab).\n", flush=True)
    jobs.refresh(store)
    for exp_id in experiments.resume_interrupted(store):  # their drivers died with the machine or the app
        print(f"resumed experiment {exp_id}", flush=True)
    print(f"LLM: {settings.llm_label}", flush=True)
    if settings.uses_embedded_llm:  # convert the GGUF once, in a child process: this one never loads the LLM
        from wizardlab.llm.embedded import prepare_in_background

        prepare_in_background(settings.cache_dir)
    from eval_ui.train import warm_hardware

    warm_hardware()  # a child process with torch, once, now rather than at the first admin's login
    if args.backup_every:
        from wizardlab.store.backup import start_scheduled

        start_scheduled(settings.db, ctx.data_dir / "backups", args.backup_every, args.backup_keep)
        print(f"Backups every {args.backup_every:g} min into {ctx.data_dir / 'backups'} "
              f"(keeping {args.backup_keep})", flush=True)
    launch(build_app(ctx), ctx, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
