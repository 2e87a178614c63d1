"""The one job runner: background work as detached processes whose state lives in the store.

A job is a `runs` row plus a process `python -m pipeline STAGE --db DB ARGS...` started
(no shell) in a new process session, with stdout and stderr going to a log file, never a
pipe, so it keeps running when the browser tab, or even the app that started it, goes
away. `launch` is the only place that builds a job's command line.

- Queues: jobs of one `queue` run one at a time. A launch while the queue is busy leaves
  the job `queued`; `refresh()` (every tab's polling, the reaper threads) starts it when
  the slot is free. Starting a queued job is a claim: one `UPDATE ... WHERE status =
  'queued'` in a write transaction, whose row count decides which caller starts it, so
  two threads or processes never start the same job twice.
- Inside the job, `job_run(store, run_id)` is the one place that marks the run running,
  installs the SIGTERM handler (`StopFlag`), throttles progress writes and records the
  end state: done, cancelled (a stop request, Ctrl-C or `Cancelled`) or failed (the
  error's one line; the traceback stays in the log).
- `refresh()` marks jobs whose process vanished without a final status as failed, with
  the exit code when known and the tail of the log.
- `cancel()` sends SIGTERM to the job's process group, after checking that the stored
  pid still belongs to the job's process (its start time), so a pid reused after a
  reboot is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wizardlab.errors import Cancelled, UserError

REPO_ROOT = Path(__file__).resolve().parent.parent  # where `python -m pipeline` is importable
ACTIVE = ("pending", "queued", "running")
RUN_ID_ENV = "WIZARDLAB_RUN_ID"
_procs: dict[int, subprocess.Popen] = {}  # run id -> child started by this process (for exit codes)
_lock = threading.Lock()


# -- starting ------------------------------------------------------------------------------
def stage_argv(stage: str, db: str, args: Sequence[str] = ()) -> list[str]:
    """The command line of a job: `python -m pipeline STAGE --db DB ARGS...` with this interpreter."""
    return [sys.executable, "-m", "pipeline", stage, "--db", db, *map(str, args)]


def launch(store, run_id: int, stage: str, args: Sequence[str] = (), *, log_dir: str | Path | None = None,
           log_path: str | Path | None = None, queue: str | None = None, env: dict | None = None) -> str:
    """Start (or queue) `python -m pipeline STAGE` as the job of run `run_id`.

    The log goes to `log_path`, else `<log_dir>/<stage>-<run_id>.log`. Returns the
    status the job got: 'running' or 'queued'.
    """
    if log_path is None:
        if log_dir is None:
            raise ValueError("launch needs log_dir or log_path")
        log_path = Path(log_dir) / f"{stage}-{run_id}.log"
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist")
    if run["status"] == "running" and process_alive(run):
        raise UserError(f"run {run_id} is already running")
    job = {"stage": stage, "args": [str(a) for a in args], "queue": queue, "env": env or {}}
    store.update_run(run_id, config={**run["config"], "_job": job}, log_path=str(log_path), status="queued",
                     error=None, exit_code=None, finished_at=None, pid=None, pid_started=None)
    return "running" if _try_start(store, run_id) else "queued"


def _try_start(store, run_id: int) -> bool:
    """Claim the queued run (atomically) if its queue is free, then start its process."""
    if not store.claim_queued_run(run_id, process_alive):
        return False
    try:
        _start(store, run_id)
    except OSError as exc:
        store.mark_run(run_id, "failed", error=f"could not start the job: {exc}")
        raise UserError(f"run {run_id}: could not start the job ({exc})") from None
    return True


def _start(store, run_id: int) -> None:
    run = store.get_run(run_id)
    job = run["config"]["_job"]
    env = {**os.environ, **job.get("env", {}), RUN_ID_ENV: str(run_id), "PYTHONUNBUFFERED": "1"}
    argv = job["argv"] if "argv" in job and "stage" not in job else stage_argv(
        job["stage"], str(Path(store.path).resolve()), job.get("args", []))  # "argv": rows of an older release
    with open(run["log_path"], "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(REPO_ROOT))
    store.update_run(run_id, pid=proc.pid, pid_started=process_start_time(proc.pid))
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
            _record_exit(store, run, code)
        refresh(store)
    finally:
        store.close()


def refresh(store) -> None:
    """Mark vanished jobs failed, then start queued jobs whose queue is free (oldest first)."""
    for run in store.active_runs():
        if run["status"] == "running" and run["pid"] and not process_alive(run):
            with _lock:
                proc = _procs.pop(run["id"], None)
            _record_exit(store, run, proc.poll() if proc is not None else None)
    for run in store.active_runs("queued"):
        _try_start(store, run["id"])


def _record_exit(store, run: dict, code: int | None) -> None:
    """The one failure policy for a process that ended: exit code, log tail, end state."""
    current = store.get_run(run["id"])
    if current is None:
        return
    if current["status"] in ("running", "pending"):
        cancelled = code is not None and code < 0 and -code in (signal.SIGTERM, signal.SIGINT)
        store.mark_run(run["id"], "cancelled" if cancelled else "failed", error=_failure_message(current, code))
    store.update_run(run["id"], exit_code=code)


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


def progress_line(run: dict) -> str:
    """One line about a run's progress, e.g. 'round 2/4: 37/50, 12 eliminated'."""
    p = run.get("progress") or {}
    if not p:
        return ""
    parts = []
    if p.get("phase") == "round" and p.get("rounds"):
        seeds = f" (with {p['seed_answers']} seed answers)" if p.get("seed_answers") else ""
        parts.append(f"round {p.get('round')}/{p.get('rounds')}: {p.get('done', 0)}/{p.get('total', 0)}{seeds}")
    elif p.get("phase"):
        parts.append(f"{p['phase']}: {p.get('done', 0)}/{p.get('total', 0)}" if p.get("total") else str(p["phase"]))
    if p.get("eliminated"):
        parts.append(f"{p['eliminated']} eliminated")
    if p.get("errors"):
        parts.append(f"{p['errors']} errors")
    return ", ".join(parts)


# -- processes -------------------------------------------------------------------------------
def process_start_time(pid: int | None) -> float | None:
    """When process `pid` started (seconds since the epoch), or None when there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time() if pid else None
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    """A live (not zombie) process with this pid exists."""
    import psutil

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def process_alive(run: dict) -> bool:
    """The run's stored pid is alive and is still the process the job started (same start time)."""
    if not pid_alive(run.get("pid")):
        return False
    started = run.get("pid_started")
    return started is None or abs((process_start_time(run["pid"]) or 0.0) - started) < 0.05


def is_live(run: dict) -> bool:
    """Queued, or running with its own process alive (a fresh run is 'pending' until launched)."""
    return run["status"] == "queued" or (run["status"] == "running" and process_alive(run))


def cancel(store, run_id: int) -> str:
    """Ask a job to stop: SIGTERM to its process group; a queued job is simply cancelled."""
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist")
    if run["status"] in ("queued", "pending"):
        store.mark_run(run_id, "cancelled")
        return "cancelled"
    if run["status"] != "running" or not process_alive(run):
        raise UserError(f"run {run_id} is not running (status: {run['status']})")
    _signal_group(run["pid"], signal.SIGTERM)
    return "cancelling"


def kill(store, run_id: int) -> None:
    """Hard stop (SIGKILL to the process group), for a job that ignores cancel."""
    run = store.get_run(run_id)
    if run and process_alive(run):
        _signal_group(run["pid"], signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        pass


# -- inside a job -----------------------------------------------------------------------------
def current_job_id() -> int | None:
    """The run id a job was started for (set by `launch`), or None in a plain shell."""
    value = os.environ.get(RUN_ID_ENV, "").strip()
    return int(value) if value.isdigit() else None


class StopFlag:
    """Installed in a job process: SIGTERM/SIGINT set `stop` instead of killing, so work ends cleanly."""

    def __init__(self) -> None:
        self.stop = False
        self.callbacks: list = []

    def install(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop:  # second signal: give up at once
            raise KeyboardInterrupt
        self.stop = True
        for cb in self.callbacks:
            cb()

    def __call__(self) -> bool:
        return self.stop


class Job:
    """What a stage sees of its own run inside `job_run`: the stop flag, progress, the end state."""

    def __init__(self, store, run_id: int, stop: StopFlag, every_s: float = 1.0):
        self.store, self.run_id, self.stop = store, run_id, stop
        self.status: str | None = None  # set to end as something else than done/cancelled
        self.error: str | None = None
        self._every_s, self._last = every_s, 0.0

    @property
    def stopping(self) -> bool:
        return self.stop.stop

    def progress(self, progress: dict, *, force: bool = False) -> None:
        """Write the run's progress JSON, at most once per `every_s` unless forced."""
        now = time.monotonic()
        if force or now - self._last >= self._every_s:
            self._last = now
            self.store.set_progress(self.run_id, progress)

    def fail(self, error: str) -> None:
        """End as failed with this one-line reason (without raising)."""
        self.status, self.error = "failed", error


@contextmanager
def job_run(store, run_id: int, *, stop: StopFlag | None = None) -> Iterator[Job]:
    """Run a stage's work as run `run_id`: mark it running with this process, record how it ended.

    Normal exit: done, or cancelled when a stop was requested (or `job.status` when set).
    `Cancelled` raised inside: cancelled, swallowed (the work is stored; run again to
    resume). KeyboardInterrupt: cancelled, re-raised. Any other exception: failed with its
    one line, re-raised (a `UserError` becomes the command's one-line error, anything
    else keeps its traceback in the log).
    """
    stop = stop or StopFlag().install()
    store.update_run(run_id, pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    store.mark_run(run_id, "running")
    job = Job(store, run_id, stop)
    try:
        yield job
    except Cancelled as exc:
        store.mark_run(run_id, "cancelled", error=str(exc) or None)
        print(f"cancelled: {exc}; run the same command again to resume", file=sys.stderr)
        return
    except KeyboardInterrupt:
        store.mark_run(run_id, "cancelled", error="interrupted")
        raise
    except BaseException as exc:
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        store.mark_run(run_id, "failed", error=message[:4000])
        raise
    status = job.status or ("cancelled" if stop.stop else "done")
    store.mark_run(run_id, status, error=job.error)
