"""The job runner: atomic claims of queued jobs, pid checks before signalling, one end-state policy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from wizardlab import jobs
from wizardlab.errors import Cancelled, UserError


def wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_launch_builds_the_stage_command_and_records_the_exit(store, tmp_path):
    run_id = store.create_run("runs-list", {})
    assert jobs.launch(store, run_id, "runs", ["--limit", 3], log_dir=tmp_path) == "running"
    wait(lambda: store.get_run(run_id)["exit_code"] is not None)
    run = store.get_run(run_id)
    assert run["config"]["_job"] == {"stage": "runs", "args": ["--limit", "3"], "queue": None, "env": {}}
    assert run["log_path"] == str(tmp_path / f"runs-{run_id}.log")
    # `runs` never marks its own run: the reaper records the exit (code 0 of a process that left it running)
    assert run["exit_code"] == 0 and run["status"] == "failed" and "code 0" in run["error"]
    assert f"{run_id:>5}  runs-list" in (tmp_path / f"runs-{run_id}.log").read_text()


def test_the_same_queued_job_started_from_many_threads_starts_once(store, tmp_path, monkeypatch):
    started: list[int] = []
    real_popen = subprocess.Popen

    def counting_popen(argv, **kwargs):
        started.append(1)
        return real_popen([sys.executable, "-c", "import time; time.sleep(2)"], **kwargs)

    monkeypatch.setattr(jobs.subprocess, "Popen", counting_popen)
    holder = store.create_run("x", {})
    assert jobs.launch(store, holder, "runs", log_dir=tmp_path, queue="q") == "running"
    queued = store.create_run("x", {})
    assert jobs.launch(store, queued, "runs", log_dir=tmp_path, queue="q") == "queued"
    assert len(started) == 1
    jobs.kill(store, holder)
    wait(lambda: not jobs.process_alive(store.get_run(holder)))
    store.mark_run(holder, "cancelled")  # the queue is free: now everybody races for the queued job
    barrier = threading.Barrier(8)

    def race():
        barrier.wait()
        jobs.refresh(store)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 2  # the holder, then the queued job exactly once
    run = store.get_run(queued)
    assert run["status"] == "running" and jobs.process_alive(run)
    jobs.kill(store, queued)


def test_a_claim_is_refused_while_the_queue_holder_lives(store, tmp_path):
    holder = store.create_run("x", {})
    jobs.launch(store, holder, "runs", log_dir=tmp_path, queue="q")
    second = store.create_run("x", {})
    store.update_run(second, status="queued", config={"_job": {"stage": "runs", "args": [], "queue": "q"}})
    run = store.get_run(holder)
    if jobs.process_alive(run):
        assert not store.claim_queued_run(second, jobs.process_alive)
    store.update_run(holder, status="done")
    assert store.claim_queued_run(second, jobs.process_alive)
    assert not store.claim_queued_run(second, jobs.process_alive)  # already claimed: status is running


def test_cancel_never_signals_a_pid_that_now_belongs_to_another_process(store):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        run_id = store.create_run("x", {}, status="running")
        # the job's process started at another time: the stored pid was reused by `other`
        store.update_run(run_id, pid=other.pid, pid_started=jobs.process_start_time(other.pid) - 1000)
        with pytest.raises(UserError, match="not running"):
            jobs.cancel(store, run_id)
        assert other.poll() is None
        jobs.refresh(store)  # and the runner sees the job as gone
        assert store.get_run(run_id)["status"] == "failed"
        assert other.poll() is None
        store.update_run(run_id, status="running", pid_started=jobs.process_start_time(other.pid))
        assert jobs.cancel(store, run_id) == "cancelling"
        assert other.wait(10) == -15
    finally:
        other.kill()


@pytest.mark.parametrize("raised, status, reraised", [
    (None, "done", None), (Cancelled("stopped after 3 of 9"), "cancelled", None),
    (UserError("seeds.jsonl line 4: missing field 'instruction'"), "failed", UserError),
    (KeyboardInterrupt(), "cancelled", KeyboardInterrupt), (ValueError("boom"), "failed", ValueError)])
def test_job_run_records_one_end_state(store, raised, status, reraised):
    run_id = store.create_run("x", {})

    def body():
        with jobs.job_run(store, run_id, stop=jobs.StopFlag()) as job:
            run = store.get_run(run_id)
            assert run["status"] == "running" and run["pid"] == os.getpid()
            job.progress({"done": 1}, force=True)
            if raised is not None:
                raise raised

    if reraised:
        with pytest.raises(reraised):
            body()
    else:
        body()
    run = store.get_run(run_id)
    assert run["status"] == status and run["progress"] == {"done": 1} and run["finished_at"]
    if isinstance(raised, UserError):
        assert run["error"] == str(raised)
    if isinstance(raised, ValueError):
        assert run["error"] == "ValueError: boom"


def test_job_run_stop_flag_and_explicit_failure(store):
    run_id = store.create_run("x", {})
    stop = jobs.StopFlag()
    with jobs.job_run(store, run_id, stop=stop):
        stop.stop = True
    assert store.get_run(run_id)["status"] == "cancelled"
    other = store.create_run("x", {})
    with jobs.job_run(store, other, stop=jobs.StopFlag()) as job:
        job.fail("2 prompts were not answered")
    assert store.get_run(other)["status"] == "failed" and store.get_run(other)["error"] == "2 prompts were not answered"
