"""The one owner of the SQLite file: connections, migrations, transactions, a batch writer.

- WAL mode, a busy timeout, foreign keys on; one connection per thread.
- Writes go through `tx()` (BEGIN IMMEDIATE ... COMMIT, short) or, from hot async code,
  through `BatchWriter`, a thread that groups queued writes into one commit so the event
  loop never waits on the disk.
Nothing outside `wizardlab.store` opens the database or writes SQL.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from wizardlab.store.schema import MIGRATIONS

if TYPE_CHECKING:
    import sqlite_utils

BUSY_TIMEOUT_MS = 30_000
_WORD = re.compile(r"\S+")


def count_words(text: str | None) -> int:
    """Words of a text, split on any whitespace: count_words("a  b\\nc") == 3 (SQL: `wl_words`)."""
    return len(_WORD.findall(text or ""))


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class StoreBase:
    """Connections and transactions. Query methods live in the mixins beside this file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    # -- connections -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("wl_words", 1, count_words, deterministic=True)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            import sqlite_utils  # here, not at the top: it imports pandas (~0.6 s warm) for every command

            db = self._local.db = sqlite_utils.Database(self.conn)
        return db

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.db = None

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction: BEGIN IMMEDIATE, commit on success, roll back on error."""
        conn = self.conn
        if conn.in_transaction:  # nested: join the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def query_one(self, sql: str, params: tuple | dict = ()) -> dict | None:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def scalar(self, sql: str, params: tuple | dict = ()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def read_parallel(self, queries: list[tuple[str, tuple]]) -> list[tuple | None]:
        """The first row of each read-only query, the queries run at once: the first on this thread's
        connection, the others each on a short-lived connection of its own in a reader thread (SQLite
        steps without the GIL, so two scans on two cores take about half the time). Each query reads
        its own snapshot. An in-memory store, or a one-core machine, runs them in turn."""
        def here(sql, params):
            row = self.conn.execute(sql, params).fetchone()
            return None if row is None else tuple(row)

        if len(queries) < 2 or self.path == ":memory:" or (os.cpu_count() or 1) < 2:
            return [here(sql, params) for sql, params in queries]
        futures = [_readers().submit(self._read_one, sql, params) for sql, params in queries[1:]]
        return [here(*queries[0])] + [f.result() for f in futures]

    def _read_one(self, sql: str, params: tuple) -> tuple | None:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        try:  # SQLite shares one file handle and its locks between a process's connections: closing is safe
            conn.execute("PRAGMA query_only = 1")
            return conn.execute(sql, params).fetchone()
        finally:
            conn.close()

    # -- migrations --------------------------------------------------------------
    def _migrate(self) -> None:
        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        applied = 0
        for migration in MIGRATIONS:
            with self.tx():
                done = conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (migration.__name__,)).fetchone()
                if done:
                    continue
                _run_script_in_tx(conn, migration)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (migration.__name__, now_iso()))
                applied += 1
        if applied and self.scalar("SELECT count(*) FROM (SELECT 1 FROM nodes LIMIT 1000)") >= 1000:
            conn.execute("ANALYZE")  # planner statistics for the new indexes (a new, empty file needs none)

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM _migrations ORDER BY rowid")]


def _run_script_in_tx(conn: sqlite3.Connection, migration) -> None:
    """executescript() would COMMIT first; split the script and run statements one by one."""

    class _Proxy:
        def executescript(self, script: str) -> None:
            for statement in _split_sql(script):
                conn.execute(statement)

        def execute(self, *args):
            return conn.execute(*args)

    migration(_Proxy())


def _split_sql(script: str) -> list[str]:
    statements, buf = [], []
    for line in script.splitlines():
        buf.append(line.split("--", 1)[0])  # schema strings never contain '--'
        joined = "\n".join(buf)
        if sqlite3.complete_statement(joined):
            if joined.strip():
                statements.append(joined.strip())
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        statements.append(rest)
    return statements


class BatchWriter:
    """A writer thread that commits queued write functions in groups.

    `submit(fn)` queues `fn(conn)`; the thread runs everything queued so far in one
    transaction. `flush()` blocks until all submitted work is committed. A failing
    function is recorded and re-raised from `flush()`/`close()`, and its batch is
    retried one function per transaction so one bad write cannot drop its neighbours.
    """

    def __init__(self, store: StoreBase, max_batch: int = 512, linger_s: float = 0.005):
        self.store = store
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, name="wizardlab-writer", daemon=True)
        self._closed = False
        self.commits = 0
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        if self._closed:
            raise RuntimeError("BatchWriter is closed")
        self._queue.put(fn)

    def flush(self, timeout: float | None = None) -> None:
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError("writer did not flush in time")
        self._raise_errors()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self.store.close()

    def _raise_errors(self) -> None:
        if self._errors:
            err = self._errors[0]
            self._errors.clear()
            raise err

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, events = [], []
            self._collect(item, batch, events)
            if batch and self.linger_s:
                time.sleep(self.linger_s)
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                self._collect(nxt, batch, events)
            if batch:
                self._commit(batch)
            for ev in events:
                ev.set()

    @staticmethod
    def _collect(item, batch: list, events: list) -> None:
        if isinstance(item, threading.Event):
            events.append(item)
        else:
            batch.append(item)

    def _commit(self, batch: list) -> None:
        try:
            with self.store.tx() as conn:
                for fn in batch:
                    fn(conn)
            self.commits += 1
        except sqlite3.Error:
            for fn in batch:
                try:
                    with self.store.tx() as conn:
                        fn(conn)
                    self.commits += 1
                except sqlite3.Error as exc:
                    self._errors.append(exc)


_READERS: list[ThreadPoolExecutor] = []
_READERS_LOCK = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    """The process's reader threads for `read_parallel` (one per core beyond the caller's, at most 3)."""
    with _READERS_LOCK:
        if not _READERS:
            _READERS.append(ThreadPoolExecutor(max_workers=min(3, max(1, (os.cpu_count() or 2) - 1)),
                                               thread_name_prefix="wl-read"))
        return _READERS[0]


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
