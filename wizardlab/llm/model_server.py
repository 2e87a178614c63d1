"""A local model kept loaded between commands: one background process per model, reached over a Unix socket.

Loading the embedded Gemma takes ~7 s (imports, weights, int8 packing, tokenizer), and every
`python -m pipeline evolve/generate/score` and every job the app starts is a new process that
would pay it again. Like Ollama's `keep_alive`, a command that runs a local model instead asks a
model server for it: the first one starts the server (a detached `python -m
wizardlab.llm.model_server serve ...`), later ones (several at once too: their requests share
the server's batches) find it loaded, and it exits by itself `keep_model_s` seconds after its
last answer (`WIZARDLAB_KEEP_MODEL_S`, default 300; 0 loads the model in the command's own
process, as before).

- One server per model, code and Python: the socket's name is a hash of the backend identity,
  `sys.executable`, `WIZARDLAB_LOCAL_DTYPE` and this package's source, so a `git pull` or
  another virtualenv never talks to an old server (which idles out).
- The socket is `<cache_dir>/model-server/<key>.sock` in a directory only its user can enter
  (0700), the server's log `<key>.log` beside it. Starting is under a file lock
  (`<key>.lock`): two commands starting at once start one server; a socket left by a killed
  server is removed and a new server started.
- Protocol: newline-delimited JSON on one connection per client. The server greets with what
  it is (pid, model, loaded or not, load time, requests served, idle seconds); a request
  `{"id", "messages", "max_tokens", "temperature", "stop", "timeout", "top_p", "seed"}` gets
  `{"id", "text", "prompt_tokens", "completion_tokens", "finish_reason", "load_s"}` or
  `{"id", "error", "transient"}`; `{"cancel": id}` drops a request that has not started;
  `{"stop": true}` ends the server.
- Where no server can start (a file system without Unix sockets, a socket path too long), the
  model loads in the command's own process, as with `keep_model_s` 0.
- A server that goes away mid-run (killed, out of memory) fails the calls in flight as
  `TransientError`: `LLMClient` retries them and the next call starts a new server, so no call
  is lost.

The answers are the in-process backend's (`LocalBackend` runs inside the server, with the same
cache dir, so stored prompt prefixes are shared). `python -m pipeline model-server` lists and
stops servers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from wizardlab.llm.base import Completion, PermanentError, TransientError
from wizardlab.llm.embedded import file_lock

log = logging.getLogger(__name__)

PROTOCOL = 1
SERVER_SUBDIR = "model-server"
LINE_LIMIT = 64 << 20  # bytes in one JSON line (a long prompt with its worked examples fits easily)
START_WAIT_S = 120.0  # a new server binds its socket before loading, so this is Python start + imports
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to ~108 bytes


def server_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir).expanduser() / SERVER_SUBDIR


@functools.cache
def _source_digest() -> str:
    """This package's source as this process runs it (read once: every backend made asks for it)."""
    source = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        source.update(path.read_bytes())
    return source.hexdigest()


def server_key(identity: str) -> str:
    """The name of the server for this model, this code and this Python."""
    text = "|".join((str(PROTOCOL), identity, sys.executable, os.environ.get("WIZARDLAB_LOCAL_DTYPE", ""),
                     _source_digest()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def socket_path(cache_dir: str | Path, identity: str) -> Path:
    return server_dir(cache_dir) / f"{server_key(identity)}.sock"


class ServerStartError(Exception):
    """A model server could not start (its log says why): the caller runs the model itself."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


# -- the client side ------------------------------------------------------------
class ServedBackend:
    """The `Backend` of a local model that runs in a model server (started when none runs)."""

    in_process = True  # the same budgets and prompts as the model in this process: the same answers

    def __init__(self, model_dir: str, *, cache_dir: str | Path, keep_s: float):
        from wizardlab.llm.local import LocalBackend

        self._local = LocalBackend(model_dir, cache_dir=cache_dir)  # names and prompt style only: never loaded here
        self.model, self.identity = self._local.model, self._local.identity
        # the server runs in another directory: it gets absolute paths
        path = Path(model_dir).expanduser()
        self.model_dir = str(path.resolve()) if path.exists() else str(model_dir)
        self.cache_dir, self.keep_s = Path(cache_dir).expanduser().resolve(), float(keep_s)
        self.socket = socket_path(self.cache_dir, self.identity)
        self.load_s: float | None = None  # seconds the server's loading held up this process (None: it was loaded)
        self.hello: dict | None = None  # what the server said it was when this process connected
        self.started_server = False  # this process started the server it talks to
        self.fallback_reason: str | None = None  # why no server could start: the model then runs in this process
        self._conn: tuple | None = None  # (reader, writer, reader task)
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop the connection belongs to

    @property
    def usable(self) -> bool:
        """Whether a model server can be used here (a Unix socket path short enough, AF_UNIX present)."""
        return hasattr(socket, "AF_UNIX") and len(str(self.socket)) <= MAX_SOCKET_PATH

    @property
    def few_shot(self) -> bool:
        return self._local.few_shot

    @property
    def max_concurrency(self) -> int:
        return self._local.max_concurrency

    async def chat(self, messages, *, max_tokens, temperature, stop, timeout, top_p=None, seed=None) -> Completion:
        start = time.monotonic()
        writer = await self._connection()
        if writer is None:  # no server could start here: the model runs in this process, as with keep 0
            answer = await self._local.chat(messages, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                            timeout=timeout, top_p=top_p, seed=seed)
            self.load_s = self._local.load_s
            return answer
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        # the deadline is the caller's: the time spent starting or reaching the server counts (a row still
        # generating at its deadline is answered as it stands, and must reach the caller before it gives up)
        left = max(0.001, timeout - (time.monotonic() - start))
        request = {"id": rid, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                   "stop": list(stop or []), "timeout": left, "top_p": top_p, "seed": seed}
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            # the server keeps the request's own deadline; this only guards against a server that hangs
            reply = await asyncio.wait_for(future, timeout + 60.0)
        except asyncio.TimeoutError:
            raise TransientError(f"the model server did not answer within {timeout + 60:.0f} s") from None
        except asyncio.CancelledError:
            self._send_quietly({"cancel": rid})
            raise
        except (ConnectionError, OSError) as exc:
            raise TransientError(f"the model server went away: {exc}") from None
        finally:
            self._pending.pop(rid, None)
        if "error" in reply:
            raise (TransientError if reply.get("transient") else PermanentError)(reply["error"])
        if self.load_s is None and self.hello is not None and not self.hello.get("loaded"):
            self.load_s = reply.get("load_s")  # this process waited for the server to load the model
        return Completion(reply["text"], reply.get("prompt_tokens", 0), reply.get("completion_tokens", 0),
                          reply.get("finish_reason"))

    async def _connection(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a caller that runs each batch in its own asyncio.run()
            self._loop, self._lock, self._conn, self._pending = loop, asyncio.Lock(), None, {}
        async with self._lock:
            if self.fallback_reason is not None:
                return None
            if self._conn is not None and not self._conn[2].done():
                return self._conn[1]
            try:
                self.started_server |= await asyncio.to_thread(ensure_server, self.model_dir, self.cache_dir,
                                                               self.identity, self.keep_s)
            except (OSError, ServerStartError) as exc:  # e.g. a file system without Unix sockets
                self.fallback_reason = _one_line(exc)
                log.warning("no model server (%s): loading %s in this process", self.fallback_reason, self.model)
                return None
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket), limit=LINE_LIMIT)
                hello = json.loads(await asyncio.wait_for(reader.readline(), 30.0) or b"null")
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                raise TransientError(f"cannot reach the model server at {self.socket}: {exc}") from None
            if not isinstance(hello, dict) or hello.get("key") != self.socket.stem:
                writer.close()
                raise PermanentError(f"{self.socket} is not this model's server (it said {str(hello)[:200]})")
            if self.hello is None:
                self.hello = hello
            self._conn = (reader, writer, asyncio.create_task(self._read(reader)))
            return writer

    async def _read(self, reader) -> None:
        """Hand each answer to its caller; when the connection ends, fail what is still waiting."""
        try:
            while line := await reader.readline():
                reply = json.loads(line)
                future = self._pending.get(reply.get("id"))
                if future is not None and not future.done():
                    future.set_result(reply)
        except (OSError, ValueError) as exc:
            reason = f"the model server's connection broke: {exc}"
        else:
            reason = "the model server went away (killed, stopped or out of memory)"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TransientError(reason))

    async def load_now(self) -> dict:
        """Start the server unless it runs, wait until its model is loaded; what it says it is then."""
        writer = await self._connection()
        if writer is None:
            raise PermanentError(f"no model server could start: {self.fallback_reason}")
        future = asyncio.get_running_loop().create_future()
        self._pending[0] = future  # request ids start at 1
        writer.write(b'{"id": 0, "load": true}\n')
        await writer.drain()
        reply = await future
        if "error" in reply:
            raise PermanentError(reply["error"])
        return reply

    def _send_quietly(self, message: dict) -> None:
        if self._conn is not None and not self._conn[2].done():
            try:
                self._conn[1].write(json.dumps(message).encode() + b"\n")
            except (OSError, RuntimeError):
                pass

    async def aclose(self) -> None:
        """Close the connection; the server stays (it exits by itself `keep_s` after its last answer)."""
        if self.fallback_reason is not None:
            await self._local.aclose()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()
            conn[2].cancel()
            try:
                await conn[1].wait_closed()
            except (OSError, asyncio.CancelledError):
                pass


def ensure_server(model_dir: str, cache_dir: str | Path, identity: str, keep_s: float) -> bool:
    """Make sure a server for this model listens; start one if none does. Returns whether one was started."""
    path = socket_path(cache_dir, identity)
    if _answers(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    with file_lock(path.with_suffix(".lock")):
        if _answers(path):  # another command started it while this one waited
            return False
        path.unlink(missing_ok=True)  # left by a server that was killed
        _tidy(path.parent)
        logfile = path.with_suffix(".log")
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wizardlab.llm.model_server", "serve", "--model", model_dir,
                 "--cache-dir", str(cache_dir), "--keep-s", str(keep_s), "--socket", str(path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[2]))
        # a long-lived caller (the app) reaps it when it exits, leaving no zombie behind
        threading.Thread(target=proc.wait, name=f"model server {proc.pid}", daemon=True).start()
        deadline = time.monotonic() + START_WAIT_S
        while not _answers(path):
            if proc.poll() is not None:
                raise ServerStartError(f"the model server for {model_dir} exited with status {proc.returncode}: "
                                     f"{_last_line(logfile)} (log: {logfile})")
            if time.monotonic() > deadline:
                proc.kill()
                raise ServerStartError(f"the model server for {model_dir} did not start within {START_WAIT_S:.0f} s "
                                     f"(log: {logfile})")
            time.sleep(0.05)
    log.info("started a model server for %s (pid %d, %s)", model_dir, proc.pid, path)
    return True


def _tidy(directory: Path, age_s: float = 3600.0) -> None:
    """Remove the logs and lock files of servers gone for an hour (older code, another Python)."""
    now = time.time()
    for file in [*directory.glob("*.log"), *directory.glob("*.lock")]:
        try:
            if not file.with_suffix(".sock").exists() and now - file.stat().st_mtime > age_s:
                file.unlink()
        except OSError:
            pass


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def start_and_load(settings) -> dict:
    """Start the model server of `settings`' local model unless it runs, wait until the model is loaded,
    and return what the server says it is then (pid, model, precision, load_s ...)."""
    from wizardlab.llm import make_backend

    backend = make_backend(settings)
    if not isinstance(backend, ServedBackend):
        raise PermanentError("model-server: only a local model (no --base-url) runs in a model server, and its "
                             "socket path must be short enough (a shorter cache dir)")

    try:
        ensure_server(backend.model_dir, backend.cache_dir, backend.identity, backend.keep_s)
    except (OSError, ServerStartError) as exc:
        raise PermanentError(f"no model server could start: {_one_line(exc)}") from None

    async def load() -> dict:
        try:
            return await backend.load_now()
        finally:
            await backend.aclose()

    return asyncio.run(load())


def describe(info: dict) -> str:
    """One line about a server from `servers()`."""
    if "stale" in info:
        return f"stale socket (no server answers): {info['stale']}"
    state = (f"loaded ({info.get('precision')}, in {info['load_s']:.1f} s)" if info.get("loaded")
             else "loading")
    busy = f"{info['active']} request(s) in flight" if info.get("active") else \
        f"idle {info.get('idle_s', 0):.0f} s of {info.get('keep_s', 0):.0f}"
    up = time.time() - info.get("started", time.time())
    return (f"pid {info['pid']}: {info['model']} {state}; {info.get('served', 0)} answered in {up:.0f} s; {busy}; "
            f"{info['socket']}")


def _greeting(path: str | Path, send: bytes = b"") -> dict:
    """Connect to the server at `path`, send `send` (if any) and read its greeting."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5.0)
        s.connect(str(path))
        if send:
            s.sendall(send)
        return json.loads(s.makefile("rb").readline() or b"null")


def servers(cache_dir: str | Path) -> list[dict]:
    """What each model server under `cache_dir` says it is; a socket nobody answers on: {"stale": path}."""
    found = []
    for path in sorted(server_dir(cache_dir).glob("*.sock")):
        try:
            found.append({**_greeting(path), "socket": str(path)})
        except (OSError, ValueError):
            found.append({"stale": str(path)})
    return found


def stop_servers(cache_dir: str | Path, wait_s: float = 30.0) -> list[dict]:
    """Ask every model server under `cache_dir` to exit (a stale socket is removed); returns what was stopped."""
    stopped = []
    for info in servers(cache_dir):
        if "stale" in info:
            Path(info["stale"]).unlink(missing_ok=True)
            continue
        try:
            _greeting(info["socket"], b'{"stop": true}\n')  # then the server closes
        except (OSError, ValueError):
            pass
        deadline = time.monotonic() + wait_s
        while Path(info["socket"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.append(info)
    return stopped


# -- the server side ------------------------------------------------------------
class _Server:
    def __init__(self, model_dir: str, cache_dir: str, keep_s: float, path: Path):
        from wizardlab.llm.local import LocalBackend

        self.backend = LocalBackend(model_dir, cache_dir=cache_dir)
        self.keep_s, self.path = keep_s, path
        self.started, self.last = time.time(), time.monotonic()
        self.active = self.served = 0
        self.done = asyncio.Event()

    def hello(self) -> dict:
        return {"server": PROTOCOL, "key": self.path.stem, "pid": os.getpid(), "model": self.backend.model,
                "identity": self.backend.identity, "loaded": self.backend._model is not None,
                "load_s": self.backend.load_s, "precision": self.backend.precision, "started": self.started,
                "served": self.served, "active": self.active, "keep_s": self.keep_s,
                "idle_s": 0.0 if self.active else round(time.monotonic() - self.last, 1)}

    async def client(self, reader, writer) -> None:
        tasks: dict = {}
        try:
            writer.write(json.dumps(self.hello()).encode() + b"\n")
            await writer.drain()
            while line := await reader.readline():
                message = json.loads(line)
                if message.get("stop"):
                    self.done.set()
                    break
                if "cancel" in message:
                    task = tasks.pop(message["cancel"], None)
                    if task is not None:
                        task.cancel()
                    continue
                # `model-server --start` asks to load: answered with the greeting once the model is loaded
                work = self.load if message.get("load") else self.chat
                tasks[message["id"]] = asyncio.create_task(self.respond(message, work, writer, tasks))
        except ConnectionError:
            pass  # a client that only checked the server answers (or went away): nothing to do
        except (OSError, ValueError) as exc:
            log.warning("a client connection ended: %s", exc)
        finally:
            for task in tasks.values():  # the client is gone: what it asked and is not started is dropped
                task.cancel()
            writer.close()

    async def load(self, message: dict) -> dict:
        await asyncio.to_thread(self.backend.load)
        return self.hello()

    async def chat(self, message: dict) -> dict:
        try:
            c = await self.backend.chat(message["messages"], max_tokens=message["max_tokens"],
                                        temperature=message["temperature"], stop=message.get("stop"),
                                        timeout=message["timeout"], top_p=message.get("top_p"),
                                        seed=message.get("seed"))
        finally:
            self.served += 1
        return {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "finish_reason": c.finish_reason, "load_s": self.backend.load_s}

    async def respond(self, message: dict, work, writer, tasks: dict) -> None:
        """Do `work` for one request (counted as in flight meanwhile) and write its reply or its error."""
        self.active += 1
        try:
            reply = {"id": message["id"], **await work(message)}
        except (TransientError, PermanentError) as exc:
            reply = {"id": message["id"], "error": str(exc), "transient": isinstance(exc, TransientError)}
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the server
            reply = {"id": message["id"], "error": f"model server: {type(exc).__name__}: {exc}", "transient": False}
        finally:
            self.active -= 1
            self.last = time.monotonic()
            tasks.pop(message["id"], None)
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, RuntimeError):
            pass  # the client went away; its answer is in nobody's way

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        old = os.umask(0o177)  # the socket: its user only (its directory is 0700 too)
        try:
            server = await asyncio.start_unix_server(self.client, path=str(self.path), limit=LINE_LIMIT)
        finally:
            os.umask(old)
        log.info("model server %s for %s listening on %s (keeps the model %.0f s after its last answer)",
                 os.getpid(), self.backend.model, self.path, self.keep_s)
        warming = self.backend.warm()  # load now: the first request usually arrives within a second
        try:
            while not self.done.is_set():
                if warming is not None and not warming.is_alive():  # idle time counts from the end of loading
                    warming, self.last = None, max(self.last, time.monotonic())
                if warming is None and not self.active and time.monotonic() - self.last >= self.keep_s:
                    log.info("idle for %.0f s: exiting", self.keep_s)
                    break
                try:
                    await asyncio.wait_for(self.done.wait(), timeout=min(1.0, max(self.keep_s, 0.05)))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.path.unlink(missing_ok=True)  # no new client finds a socket nobody serves
            server.close()
            await self.backend.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wizardlab.llm.model_server")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--keep-s", type=float, default=300.0)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_Server(args.model, args.cache_dir, args.keep_s, Path(args.socket)).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
