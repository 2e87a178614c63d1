"""Limits on password guessing: per account and per client address, answered without scrypt.

`LoginLimiter` counts failed logins in a sliding window. The first `free` failures of an
account (or from an address) cost nothing extra; each further one locks that account (or
address) for a delay that doubles, from `base_delay` up to `max_delay`. While locked, a login
is refused at once, without checking the password (no scrypt time spent, no hint whether the
password was right). A success clears the account's and the address's record, so the owner
gets in as soon as the lock of a flood runs out.

Names that do not exist are counted like real ones: a lock says nothing about which
accounts exist. State lives in memory (one app process); every failure and lock is logged
with the address, and `snapshot()` is what the Admin tab shows. This module knows nothing
of Gradio or HTTP.

    limiter = LoginLimiter()
    wait = limiter.wait_seconds("admin", "10.0.0.7")   # 0: go on and check the password
    limiter.failed("admin", "10.0.0.7")                # after a wrong password
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("wizardlab.login")


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)  # times of failures inside the window
    locked_until: float = 0.0
    refused: int = 0  # attempts answered while locked
    pending: int = 0  # admitted checks not finished yet (concurrent tries count before they fail)
    last_other: str = ""  # the last address (for an account) or account (for an address)


class LoginLimiter:
    """Failed-login throttle keyed by ("user", name) and ("addr", address); thread-safe."""

    def __init__(self, free: int = 5, base_delay: float = 15.0, max_delay: float = 300.0, window: float = 3600.0,
                 clock=time.monotonic, wall=time.time):
        self.free, self.base_delay, self.max_delay, self.window = free, base_delay, max_delay, window
        self._clock, self._wall = clock, wall
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    MAX_RECORDS = 10_000  # beyond this, records with nothing recent are dropped (random-name floods)

    @staticmethod
    def _keys(username: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("user", (username or "").strip().lower()[:64])]
        return keys + [("addr", address)] if address else keys

    def wait_seconds(self, username: str, address: str | None) -> float:
        """Seconds until this account and address may try again (0: check the password now).

        A 0 admits the try: the caller must then report `failed`, `succeeded` or `release`.
        Concurrent tries count as if they had failed already, so a burst from many clients
        gets no more checks than one client trying in turn."""
        now = self._clock()
        with self._lock:
            if len(self._records) > self.MAX_RECORDS:
                self._prune(now)
            keys = self._keys(username, address)
            recs = [self._records.setdefault(key, _Record()) for key in keys]
            waits = [rec.locked_until - now for rec in recs if rec.locked_until > now]
            if not waits and any(self._busy(key, rec, now) for key, rec in zip(keys, recs)):
                waits = [1.0]  # one check at a time once the free tries are used up
            if waits:
                for rec in recs:
                    rec.refused += 1
                return max(waits)
            for rec in recs:
                rec.pending += 1
            return 0.0

    # concurrent tries one address may have in flight before any of them failed: a team behind one
    # office address logs in at once (20 annotators at 9:00), an account never does
    ADDRESS_BURST = 50

    def _busy(self, key: tuple[str, str], rec: _Record, now: float) -> bool:
        """Too many tries in flight for this key to admit another before they end (lock held)."""
        recent = len(self._recent(rec, now))
        if key[0] == "addr" and not recent:
            return rec.pending >= self.ADDRESS_BURST
        return bool(rec.pending) and recent + rec.pending >= self.free

    def release(self, username: str, address: str | None) -> None:
        """An admitted try that ended without a verdict (an error): it no longer counts as pending."""
        with self._lock:
            for key in self._keys(username, address):
                rec = self._records.get(key)
                if rec and rec.pending:
                    rec.pending -= 1

    def _prune(self, now: float) -> None:
        """Drop records with no failure inside the window, no lock and nothing pending (lock held)."""
        for key in [k for k, r in self._records.items()
                    if not r.pending and r.locked_until <= now and not self._recent(r, now)]:
            del self._records[key]

    def _recent(self, rec: _Record, now: float) -> list[float]:
        return [t for t in rec.failures if now - t < self.window]

    def failed(self, username: str, address: str | None) -> float:
        """Record a wrong password; returns the lock it causes in seconds (0: none yet)."""
        now = self._clock()
        longest = 0.0
        with self._lock:
            for key in self._keys(username, address):
                rec = self._records.setdefault(key, _Record())
                rec.pending = max(0, rec.pending - 1)
                rec.failures = self._recent(rec, now) + [now]
                rec.last_other = (address or "") if key[0] == "user" else (username or "")
                over = len(rec.failures) - self.free
                if over > 0:
                    delay = min(self.max_delay, self.base_delay * 2 ** (over - 1))
                    rec.locked_until = max(rec.locked_until, now + delay)
                    longest = max(longest, delay)
        log.warning("failed login for %r from %s%s", (username or "")[:64], address or "?",
                    f"; locked for {longest:.0f} s" if longest else "")
        return longest

    def succeeded(self, username: str, address: str | None) -> None:
        with self._lock:
            for key in self._keys(username, address):
                self._records.pop(key, None)

    def snapshot(self) -> list[dict]:
        """What admins see: accounts and addresses with recent failures, most recent first."""
        now, wall = self._clock(), self._wall()
        with self._lock:
            rows = [{"kind": "account" if kind == "user" else "address", "key": key,
                     "failures": len(self._recent(rec, now)),
                     "refused": rec.refused, "locked_for": max(0.0, rec.locked_until - now),
                     "last": wall - (now - rec.failures[-1]) if rec.failures else None,
                     "last_other": rec.last_other}
                    for (kind, key), rec in self._records.items() if rec.failures or rec.refused]
        return sorted(rows, key=lambda r: -(r["last"] or 0))
