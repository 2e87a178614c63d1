"""The paper's scale: a synthetic 250,000-node forest, and what each interactive action costs on it.

Builds a forest through the store API (52,000 roots x 5 levels by default: rounds 0-4, 30% of
evolutions eliminated, instructions ~64 words, responses ~233 words, a difficulty on every kept
node), caches the file under /tmp (reruns reuse it), then times, through the same functions
the tabs and stages call: one tree, root search by text and by each filter, the Data tab's full
show, an override and a bulk override followed by the Data tab again, each export (in a child
process, with its peak memory), and the server CPU of one admin login on the running app
(`python app.py`, real HTTP, a headless Chromium).

    python bench/forest_scale.py [--nodes 250000 | --roots 52000] [--levels 5] [--db PATH] [--json]
                                 [--compare DIR] [--no-login]

`--compare DIR` measures a second checkout (e.g. `git archive main | tar -x -C DIR`) on its own
copy of the same forest, in the same run, and prints the ratio. The forest is built with the
oldest code measured, so the newer one also migrates it (timed as `migrate`). Every figure is
printed with the load average (the machine may be shared: compare ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
OPS = ["add_constraints", "deepening", "concretizing", "increase_reasoning", "complicate_input", "in_breadth"]
RULES = ["no_information_gain", "sorry_short_response", "stopwords_only_response", "copied_prompt_words"]
ADMIN_PW = "bench-admin-pass-1"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# -- building -----------------------------------------------------------------------------------
def _vocab(rng: random.Random, n: int = 20_000) -> list[str]:
    syl = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "de", "pa", "qu", "zen", "tor", "lin", "mar", "ex"]
    words = sorted({"".join(rng.choice(syl) for _ in range(rng.randint(2, 4))) for _ in range(n * 2)})[:n]
    rng.shuffle(words)  # Zipf weights go to random words (sorted, the frequent ones shared one prefix)
    return words


def _texts(rng: random.Random, vocab: list[str], weights: list[float], words: int):
    return " ".join(rng.choices(vocab, weights, k=max(3, int(rng.gauss(words, words / 4)))))


def build(path: Path, roots: int, levels: int) -> None:
    """The forest, written through the store API in a few transactions per round."""
    from wizardlab.store import Store

    rng = random.Random(0)
    vocab = _vocab(rng)
    weights = [1 / (i + 1) for i in range(len(vocab))]
    pool = [_texts(rng, vocab, weights, 233) for _ in range(4000)]  # responses: a pool, made unique below
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    store = Store(tmp)
    run_id = store.create_run("evolve", {"bench": "forest_scale", "roots": roots, "levels": levels},
                              name="forest scale bench", status="done")
    t0 = time.time()
    for start in range(0, roots, 10_000):
        store.insert_seeds(run_id, ({"instruction": _texts(rng, vocab, weights, 64), "input": "",
                                     "response": f"{rng.choice(pool)} r{start + i}"}
                                    for i in range(min(10_000, roots - start))))
    print(f"  seeds {roots} in {time.time() - t0:.0f} s (load {load()})", flush=True)
    for rnd in range(1, levels):
        store.create_round(run_id, rnd, lambda: rng.choice(OPS))
        _write_round(store, run_id, rnd, rng, vocab, weights, pool)
        print(f"  round {rnd} done at {time.time() - t0:.0f} s (load {load()})", flush=True)
    kept = [r["id"] for r in store.query("SELECT id FROM nodes WHERE run_id = ? AND status IN ('seed', 'kept')",
                                         (run_id,))]
    for i in range(0, len(kept), 20_000):
        store.set_difficulties((nid, float(rng.randint(1, 10)), str(rng.randint(1, 10)))
                               for nid in kept[i:i + 20_000])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    os.replace(tmp, path)
    print(f"  built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.time() - t0:.0f} s", flush=True)


def _write_round(store, run_id, rnd, rng, vocab, weights, pool) -> None:
    pending = list(store.iter_pending(run_id, rnd))
    for i in range(0, len(pending), 5_000):
        with store.tx() as conn:
            for node in pending[i:i + 5_000]:
                instruction = _texts(rng, vocab, weights, 64)
                response = f"{rng.choice(pool)} n{node['id']}"
                bad = rng.random() < 0.3
                raw = {"evolve": "#Rewritten Prompt#: " + instruction, "respond": response}
                store.write_node_result(conn, node["id"], status="eliminated" if bad else "kept",
                                        instruction=instruction, response=response,
                                        fail_rules=[rng.choice(RULES)] if bad else [],
                                        error="synthetic" if bad else None, raw=raw)


# -- measuring (in a child process per code checkout) -------------------------------------------
def timed(out: dict, name: str, fn, repeat: int = 1):
    best, value = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    out[name] = {"s": round(best, 4), "load": load()}
    print(f"    {name:28s} {best:9.3f} s   (load {load()})", flush=True)
    return value


def _search(store, run_id, filters: dict):
    from eval_ui import lineage
    from wizardlab import curation

    f = curation.Filters.parse(**filters)
    if hasattr(lineage, "search_page"):
        return lineage.search_page(store, run_id, f, page=1)
    return store.count_roots(run_id, f.as_dict()), lineage.roots_rows(store, run_id, f)


def _data_show(ctx, run_id):
    from eval_ui import data

    if hasattr(data, "show_views"):
        return data.show_views(ctx, run_id, "round")
    store = ctx.store()
    return (*data.counts_out(store, run_id), *data.diff_out(store, run_id), *data.map_out(ctx, run_id, "round"))


def measure(db: Path, out: dict) -> None:
    from eval_ui import lineage
    from eval_ui.context import AppContext
    from wizardlab import curation
    from wizardlab.config import Settings
    from wizardlab.store import Store

    t = time.perf_counter()
    store = Store(db)
    out["migrate"] = {"s": round(time.perf_counter() - t, 3), "load": load()}
    print(f"    {'open + migrate':28s} {out['migrate']['s']:9.3f} s   (load {load()})", flush=True)
    run_id = store.latest_run_id("evolve")
    ctx = AppContext(Settings.from_env(db=str(db), data_dir=str(db.parent / (db.stem + "-data"))))
    ctx._store = store
    from eval_ui import app as app_module

    if hasattr(app_module, "settle_heap"):  # as `python app.py` does before serving (older checkouts: not)
        app_module.settle_heap()
    n_roots = store.count_nodes(run_id, 0)
    root = store.scalar("SELECT id FROM nodes WHERE run_id = ? AND round = 0 ORDER BY id LIMIT 1 OFFSET ?",
                        (run_id, n_roots * 3 // 7))
    word = max(store.scalar("SELECT instruction FROM nodes WHERE id = ?", (root,)).split(), key=len)
    timed(out, "tree", lambda: lineage.tree_html(store, root), repeat=3)
    timed(out, "search_text", lambda: _search(store, run_id, {"text": word}))  # a long (rarer) word
    timed(out, "search_text_common", lambda: _search(store, run_id, {"text": "tor"}))  # in most instructions
    timed(out, "search_text_2chars", lambda: _search(store, run_id, {"text": "ka"}))  # too short to index
    timed(out, "search_none", lambda: _search(store, run_id, {}))
    for key, value in (("round", 2), ("operation", "deepening"), ("status", "eliminated"),
                       ("rule", "no_information_gain")):
        timed(out, f"search_{key}", lambda: _search(store, run_id, {key: value}))
    timed(out, "data_show", lambda: _data_show(ctx, run_id))
    timed(out, "data_show_again", lambda: _data_show(ctx, run_id))
    node = store.scalar("SELECT id FROM nodes WHERE run_id = ? AND round = 2 AND status = 'eliminated' LIMIT 1",
                        (run_id,))
    timed(out, "override_one", lambda: curation.override_node(store, node, "restore", "bench", "bench"))
    n = timed(out, "bulk_override", lambda: curation.bulk_override(
        store, run_id, {"round": 3, "rule": "no_information_gain"}, "restore", "bench", "bench"))
    out["bulk_override"]["nodes"] = n
    timed(out, "data_show_after_bulk", lambda: _data_show(ctx, run_id))
    if hasattr(store, "check_override_status"):
        timed(out, "check_override_status", lambda: store.check_override_status(run_id))
    store.close()


EXPORT_CHILD = r"""
import json, os, sys, threading, time, tempfile
from pathlib import Path
from wizardlab.store import Store
from wizardlab.export import export_dataset
db, fmt, out = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store(db)
if fmt == "hf":
    import datasets  # imported before the baseline: the library's own size is not the export's
def hwm():  # this process's peak RSS (VmHWM; ru_maxrss would carry the forking parent's over the exec)
    return next(int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith("VmHWM:"))
base = hwm()
anon = [0]
def sample():  # RssAnon: the process's own memory, without file pages it maps (an Arrow file it writes)
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                anon[0] = max(anon[0], int(line.split()[1]) * 1024)
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
export_dataset(store, None, Path(out) / f"x.{fmt}", fmt)
s = time.perf_counter() - t
peak = hwm()
print(json.dumps({"s": round(s, 3), "peak_bytes": peak, "peak_anon_bytes": anon[0], "base_bytes": base}))
"""


def measure_exports(db: Path, code: Path, out: dict) -> None:
    for fmt in ("jsonl", "alpaca", "sharegpt", "hf"):
        with tempfile.TemporaryDirectory(dir=db.parent) as tmp:
            res = subprocess.run([sys.executable, "-c", EXPORT_CHILD, str(db), fmt, tmp], cwd=code,
                                 capture_output=True, text=True, env=_env(code))
        if res.returncode:
            print(res.stderr[-2000:])
            out[f"export_{fmt}"] = {"error": res.stderr.strip().splitlines()[-1]}
            continue
        out[f"export_{fmt}"] = {**json.loads(res.stdout.strip().splitlines()[-1]), "load": load()}
        r = out[f"export_{fmt}"]
        print(f"    {'export_' + fmt:28s} {r['s']:9.3f} s   peak {r['peak_bytes'] / 1e6:7.0f} MB, anon "
              f"{r['peak_anon_bytes'] / 1e6:.0f} MB (base {r['base_bytes'] / 1e6:.0f} MB, load {load()})", flush=True)


def _env(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def measure_login(db: Path, code: Path, port: int, out: dict) -> None:
    """Server CPU (user+sys, with the child processes it waited for) of the app from the login click until
    the page settles."""
    import psutil
    from playwright.sync_api import sync_playwright

    data_dir = db.parent / (db.stem + "-appdata")
    proc = subprocess.Popen([sys.executable, "app.py", "--db", str(db), "--port", str(port), "--data-dir",
                             str(data_dir), "--base-url", "http://127.0.0.1:9/v1", "--model", "none"], cwd=code,
                            env=_env(code), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ps = psutil.Process(proc.pid)
        _wait_port(port)
        time.sleep(2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_label("username").fill("bench")
            page.get_by_label("password").fill(ADMIN_PW)
            _settle(ps)
            i0, it0 = sum(ps.cpu_times()[:2]), time.perf_counter()
            time.sleep(5)  # the app idle, the login page open: what its queue's polling costs
            idle = (sum(ps.cpu_times()[:2]) - i0) / (time.perf_counter() - it0)
            c0, t0 = sum(ps.cpu_times()[:4]), time.perf_counter()
            page.get_by_role("button", name="Login").click()
            page.locator("#wl-header .wl-user").wait_for()
            _settle(ps)
            cpu = sum(ps.cpu_times()[:4]) - c0  # with its child processes (hardware detection)
            out["admin_login"] = {"cpu_s": round(cpu, 3), "wall_s": round(time.perf_counter() - t0, 3),
                                  "rss_bytes": ps.memory_info().rss, "load": load(),
                                  "idle_cpu_share": round(idle, 4)}
            b.close()
        print(f"    {'admin_login (server CPU)':28s} {cpu:9.3f} s   rss {out['admin_login']['rss_bytes'] / 1e6:.0f} MB "
              f"(idle before it: {idle:.1%} of a core; load {load()})", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


def _settle(ps, quiet_s: float = 3.0, max_s: float = 120.0) -> None:
    """Wait until the server has used (almost) no CPU for `quiet_s` seconds (at most `max_s`: an app
    that polls busily when idle, as Gradio's queue did every 1 ms, may never look quiet)."""
    last, quiet, end = sum(ps.cpu_times()[:2]), 0.0, time.monotonic() + max_s
    while quiet < quiet_s and time.monotonic() < end:
        time.sleep(0.5)
        now = sum(ps.cpu_times()[:2])
        quiet = quiet + 0.5 if now - last < 0.05 else 0.0
        last = now


def _wait_port(port: int, timeout: float = 120) -> None:
    import socket

    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the app did not listen on port {port}")


def child_main(args) -> None:
    """Measure one code checkout on its own copy of the forest; print one JSON line."""
    out: dict = {}
    db = Path(args.work)
    measure(db, out)
    from wizardlab import auth
    from wizardlab.store import Store

    store = Store(db)
    if store.get_user("bench") is None:
        auth.add_user(store, "bench", ADMIN_PW, "admin")
    store.close()
    measure_exports(db, Path(args.code), out)
    if not args.no_login:
        measure_login(db, Path(args.code), args.port, out)
    out["peak_rss_bytes_measure_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(out), flush=True)


def run_checkout(code: Path, cached: Path, args) -> dict:
    work = cached.with_name(f"{cached.stem}-work-{os.getpid()}.db")
    print(f"\n== {code} (copy of {cached.name}, load {load()})", flush=True)
    shutil.copyfile(cached, work)
    with open(work, "rb") as fh:  # written out before timing: the copy's 2 GB of dirty pages, flushed while
        os.fsync(fh.fileno())     # the searches and exports ran, took their disk (jsonl export 16-18 s, not 5-9)
    try:
        cmd = [sys.executable, str(HERE / "bench" / "forest_scale.py"), "--child", "--work", str(work), "--code",
               str(code), "--port", str(args.port)] + (["--no-login"] if args.no_login else [])
        res = subprocess.run(cmd, cwd=code, env=_env(code), stdout=subprocess.PIPE, text=True)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        print("\n".join(x for x in res.stdout.splitlines() if not x.startswith("RESULT ")))
        return json.loads(line[7:]) if line else {"error": f"exit {res.returncode}"}
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(work) + suffix).unlink(missing_ok=True)
        shutil.rmtree(work.parent / (work.stem + "-data"), ignore_errors=True)


def _fig(v: dict | None) -> float | None:
    if not v or "error" in v:
        return None
    return v.get("cpu_s", v.get("s"))


def report(results: dict[str, dict]) -> None:
    names = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r if isinstance(r[k], dict)))
    print("\n| action | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else ""))
    print("|---" * (len(names) + 1 + (len(names) == 2)) + "|")
    for k in keys:
        cells = []
        for n in names:
            v = results[n].get(k)
            f = _fig(v)
            cell = "-" if f is None else f"{f:.3f} s"
            if v and v.get("peak_bytes"):
                cell += f", peak {v['peak_bytes'] / 1e6:.0f} MB"
            if v and v.get("peak_anon_bytes"):
                cell += f" (anon {v['peak_anon_bytes'] / 1e6:.0f} MB)"
            cells.append(cell)
        ratio = ""
        if len(names) == 2:
            a, b = _fig(results[names[0]].get(k)), _fig(results[names[1]].get(k))
            ratio = f" | {a / b:.1f}x" if a and b else " | -"
        print(f"| {k} | " + " | ".join(cells) + ratio + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, help="total nodes (roots = nodes / levels)")
    p.add_argument("--roots", type=int, default=52_000)
    p.add_argument("--levels", type=int, default=5, help="rounds including the seeds (default 5)")
    p.add_argument("--db", help="the cached forest (default /tmp/wl-forest-<roots>x<levels>-v2.db)")
    p.add_argument("--compare", help="another checkout to measure first (e.g. main, extracted with git archive)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    p.add_argument("--no-login", action="store_true", help="skip the admin login (needs chromium)")
    p.add_argument("--port", type=int, default=7830)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--code", default=str(HERE), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, args.code)
        return child_main(args)
    roots = args.nodes // args.levels if args.nodes else args.roots
    cached = Path(args.db or f"/tmp/wl-forest-{roots}x{args.levels}-v2.db")
    codes = ([Path(args.compare).resolve()] if args.compare else []) + [HERE]
    if not cached.exists():
        print(f"building {roots} roots x {args.levels} levels into {cached} with {codes[0]} (load {load()})")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE / 'bench')!r}); "
                        f"import forest_scale as f; from pathlib import Path; "
                        f"f.build(Path({str(cached)!r}), {roots}, {args.levels})"],
                       cwd=codes[0], env=_env(codes[0]), check=True)
    results = {("before" if len(codes) == 2 and i == 0 else "after" if len(codes) == 2 else "this"):
               run_checkout(c, cached, args) for i, c in enumerate(codes)}
    report(results)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results["this"]))


if __name__ == "__main__":
    main()
