"""Background jobs: detached subprocesses whose state lives in the store and output in a log file.

A job is a `runs` row plus a process started from an argv list (no shell) in a new
process session, with stdout and stderr going to a log file, never a pipe, so it keeps
running when the browser tab or even the app that started it goes away.

- The child reports its own progress and final status in its `runs` row.
- `refresh()` marks jobs whose process vanished without a final status as failed, with
  the exit code when known and the tail of the log.
- Jobs of one `queue` run one at a time: a launch while another is running waits as
  `queued` and starts when `refresh()` (or the reaper thread) finds the slot free.
- `cancel()` signals the whole process group with SIGTERM; the child stops cleanly
  (saving what it has) and marks itself `cancelled`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from wizardlab.errors import UserError

_procs: dict[int, subprocess.Popen] = {}  # run id -> child started by this process (for exit codes)
_lock = threading.Lock()


def python_argv(*args: str) -> list[str]:
    """argv for `python -m pipeline ...` with this interpreter."""
    return [sys.executable, "-m", "pipeline", *args]


def launch(store, run_id: int, argv: list[str], log_path: str | Path, *, queue: str | None = None,
           env: dict | None = None, cwd: str | None = None) -> str:
    """Start (or queue) the job of run `run_id`; returns the status it got: 'running' or 'queued'."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = store.get_run(run_id)
    config = dict(run["config"])
    config["_job"] = {"argv": list(argv), "queue": queue, "env": env or {}, "cwd": cwd}
    store.update_run(run_id, config=config, log_path=str(log_path))
    if queue and _busy(store, queue, exclude=run_id):
        store.update_run(run_id, status="queued", error=None, exit_code=None)
        return "queued"
    _start(store, run_id)
    return "running"


def _busy(store, queue: str, exclude: int | None = None) -> bool:
    for run in store.list_runs(limit=1000):
        if run["id"] != exclude and run["status"] == "running" and run["config"].get("_job", {}).get("queue") == queue:
            if pid_alive(run["pid"]):
                return True
    return False


def _start(store, run_id: int) -> None:
    run = store.get_run(run_id)
    job = run["config"]["_job"]
    env = {**os.environ, **job.get("env", {}), "WIZARDLAB_RUN_ID": str(run_id), "PYTHONUNBUFFERED": "1"}
    with open(run["log_path"], "ab") as log:
        proc = subprocess.Popen(job["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=job.get("cwd"))
    store.update_run(run_id, pid=proc.pid, status="running", error=None, exit_code=None, finished_at=None)
    with _lock:
        _procs[run_id] = proc
    threading.Thread(target=_reap, args=(store.path, run_id, proc), daemon=True, name=f"reaper-{run_id}").start()


def _reap(db_path: str, run_id: int, proc: subprocess.Popen) -> None:
    code = proc.wait()
    from wizardlab.store import Store

    store = Store(db_path)
    try:
        run = store.get_run(run_id)
        if run is not None and run["pid"] == proc.pid:  # not relaunched meanwhile
            _record_exit(store, run_id, code)
        refresh(store)
    finally:
        store.close()


def _record_exit(store, run_id: int, code: int | None) -> None:
    run = store.get_run(run_id)
    if run is None:
        return
    fields: dict = {"exit_code": code}
    if run["status"] in ("running", "pending"):
        status = "cancelled" if code is not None and code < 0 and -code in (signal.SIGTERM, signal.SIGINT) else "failed"
        store.mark_run(run_id, status, error=_failure_message(run, code))
    store.update_run(run_id, **fields)


def _failure_message(run: dict, code: int | None) -> str:
    tail = log_tail(run.get("log_path"), 20)
    head = f"process exited with code {code}" if code is not None else "process is gone"
    return head + (":\n" + tail if tail else "")


def log_tail(path: str | None, lines: int = 40) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def refresh(store) -> None:
    """Mark vanished jobs failed and start queued jobs whose queue is free."""
    runs = store.list_runs(limit=1000)
    for run in runs:
        if run["status"] == "running" and run["pid"] and not pid_alive(run["pid"]):
            with _lock:
                proc = _procs.pop(run["id"], None)
            code = proc.poll() if proc is not None else None
            _record_exit(store, run["id"], code)
    for run in sorted(runs, key=lambda r: r["id"]):
        job = run["config"].get("_job") or {}
        if store.get_run(run["id"])["status"] == "queued" and not _busy(store, job.get("queue") or "", exclude=run["id"]):
            _start(store, run["id"])


def cancel(store, run_id: int) -> str:
    """Ask a job to stop: SIGTERM to its process group; a queued job is simply cancelled."""
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist")
    if run["status"] in ("queued", "pending"):
        store.mark_run(run_id, "cancelled")
        return "cancelled"
    if run["status"] != "running" or not pid_alive(run["pid"]):
        raise UserError(f"run {run_id} is not running (status: {run['status']})")
    try:
        os.killpg(os.getpgid(run["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        pass
    return "cancelling"


def kill(store, run_id: int) -> None:
    """Hard stop (SIGKILL to the process group), for a job that ignores cancel."""
    run = store.get_run(run_id)
    if run and run["pid"] and pid_alive(run["pid"]):
        try:
            os.killpg(os.getpgid(run["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass


class StopFlag:
    """Installed in a job process: SIGTERM/SIGINT set `stop` instead of killing, so work ends cleanly."""

    def __init__(self) -> None:
        self.stop = False
        self.callbacks: list = []

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop:  # second signal: give up at once
            raise KeyboardInterrupt
        self.stop = True
        for cb in self.callbacks:
            cb()
