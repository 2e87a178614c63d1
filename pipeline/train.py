"""`python -m pipeline train`: fine-tune a base model on an exported data set (SFT, DeepSpeed optional).

In the foreground (default) it starts the launcher (`python`, `torchrun` or `deepspeed`
running pipeline/train_sft.py) with output to `<out>/train.log` and shows a tqdm bar fed
by `<out>/progress.jsonl`; Ctrl-C saves a checkpoint and stops. `--detach` starts the same
command as a background job on the "train" queue instead (a second one waits);
`--cancel RUN` stops a job (it checkpoints); `--resume` continues from the newest
checkpoint in `--out`, or, with `--run RUN`, relaunches that job.

    python -m pipeline train --data alpaca.json --model tiny-llama --out runs/t1 --max-steps 20
    python -m pipeline train --data alpaca.json --model tiny-llama --out runs/ds --deepspeed zero3 --nproc 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from wizardlab import jobs
from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.training import launch as runs
from wizardlab.training.base_models import resolve_model
from wizardlab.training.data import count_examples
from wizardlab.training.config import add_config_arguments, build_argv, config_from_args, detect_hardware, preview

HELP = "Fine-tune a base model on an exported data set (SFT, DeepSpeed optional)."


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--db", default=None, help="SQLite store: record the run there (needed by --detach/--cancel)")
    parser.add_argument("--detach", action="store_true", help="run as a background job (queue 'train')")
    parser.add_argument("--cancel", type=int, metavar="RUN", help="stop a training job (it saves a checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--run", type=int, metavar="RUN", help="with --resume: relaunch this run as a job")
    parser.add_argument("--print-command", action="store_true", help="print the launch command and exit")
    parser.add_argument("--exec-run", type=int, metavar="RUN", help=argparse.SUPPRESS)  # a job: become its launcher


def main(args) -> int:
    settings = Settings.from_env(db=args.db)
    if args.exec_run is not None:
        return _exec_run(settings, args.exec_run)
    if args.cancel is not None:
        return _cancel(settings, args.cancel)
    if args.resume and args.run is not None:
        return _resume_job(settings, args.run)
    cfg = config_from_args(args)
    if args.print_command:
        print(preview(build_argv(cfg, detect_hardware(), db=args.db) + (["--resume"] if args.resume else [])))
        return 0
    if args.detach:
        return _detach(settings, cfg)
    return run_foreground(cfg, settings, db=args.db, resume=args.resume)


def _store(settings: Settings):
    from wizardlab.store import Store

    return Store(settings.db)


def _exec_run(settings: Settings, run_id: int) -> int:
    """Inside a training job: replace this process with the launcher command stored in the run."""
    run = runs.train_run(_store(settings), run_id)
    argv = run["config"]["argv"]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {**os.environ, "WIZARDLAB_RUN_ID": str(run_id)})
    return 0  # not reached


def _cancel(settings: Settings, run_id: int) -> int:
    store = _store(settings)
    print(f"run {run_id}: {runs.stop_training(store, run_id)}")
    return 0


def _resume_job(settings: Settings, run_id: int) -> int:
    store = _store(settings)
    status = runs.resume_training(store, run_id, cache_dir=settings.cache_dir)
    print(f"run {run_id}: {status} (log: {store.get_run(run_id)['log_path']})")
    return 0


def _detach(settings: Settings, cfg) -> int:
    store = _store(settings)
    run_id = runs.launch_training(store, cfg, cache_dir=settings.cache_dir, created_by=os.environ.get("USER"))
    run = store.get_run(run_id)
    print(f"run {run_id}: {run['status']} (log: {run['log_path']}; stop: python -m pipeline train --cancel {run_id})")
    return 0


def run_foreground(cfg, settings: Settings, *, db: str | None, resume: bool) -> int:
    """Start the launcher as a child (output to train.log) and follow progress.jsonl with tqdm."""
    out = Path(cfg.output_dir)
    if not resume and out.is_dir() and any(out.iterdir()):
        raise UserError(f"output directory {out} is not empty: choose a new one, or add --resume")
    count_examples(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    resolve_model(cfg.model, settings.cache_dir)
    argv = build_argv(cfg, detect_hardware(), db=db) + (["--resume"] if resume else [])
    env = {**os.environ, "WIZARDLAB_CACHE": str(settings.cache_dir), "PYTHONUNBUFFERED": "1"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    store = _store(settings) if db else None
    if store is not None:
        run_id = store.create_run(runs.KIND, {**cfg.to_dict(), "argv": argv}, log_path=str(out / runs.LOG_FILE))
        store.mark_run(run_id, "running")
        env["WIZARDLAB_RUN_ID"] = str(run_id)
    print(preview(argv), file=sys.stderr)
    log_path = out / runs.LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _follow(proc, out)
    except KeyboardInterrupt:
        print("stopping: saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        proc.wait()
        return 130
    return _report_exit(proc.returncode, log_path, out, store, env.get("WIZARDLAB_RUN_ID"))


def _follow(proc: subprocess.Popen, out: Path) -> None:
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", desc="train", dynamic_ncols=True)
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            _update_bar(bar, runs.read_progress(out))
        _update_bar(bar, runs.read_progress(out))
    finally:
        bar.close()


def _update_bar(bar, records: list[dict]) -> None:
    last = next((r for r in reversed(records) if "loss" in r), None)
    if last is None or (last["step"] == bar.n and bar.total == last.get("max_steps")):
        return
    bar.total = last.get("max_steps") or bar.total
    bar.n = last["step"]
    bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last.get('tokens_per_s', 0):.0f}", refresh=False)
    bar.refresh()


def _report_exit(code: int, log_path: Path, out: Path, store, run_id: str | None) -> int:
    if code == 0:
        done = (out / runs.DONE_FILE).is_file()
        print(f"{'finished' if done else 'stopped with a checkpoint'}: {out}", file=sys.stderr)
        return 0
    tail = jobs.log_tail(str(log_path), 20)
    if store is not None and run_id and store.get_run(int(run_id))["status"] == "running":
        store.mark_run(int(run_id), "failed", error=f"exit code {code}:\n{tail}", exit_code=code)
    print(tail, file=sys.stderr)
    raise UserError(f"training failed with exit code {code}; full log: {log_path}")
