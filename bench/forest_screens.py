"""Screenshots of the Lineage and Data tabs on the big forest, with how long each view took to settle.

    python bench/forest_screens.py --db /tmp/wl-forest-52000x5.db [--out docs/screenshots] [--port 7831]

Works on a copy of the forest (migrated by this checkout); starts `python app.py` on it, logs in
as a bench admin in headless Chromium, searches the Lineage tab (then the next page), opens the
Data tab, and saves `scale-lineage.png` and `scale-data.png`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bench"))

from forest_scale import ADMIN_PW, _env, _wait_port, load  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--out", default=str(HERE / "docs" / "screenshots"))
    p.add_argument("--port", type=int, default=7831)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from wizardlab import auth
    from wizardlab.store import Store

    work = Path(args.db).with_name(Path(args.db).stem + "-screens.db")
    shutil.copyfile(args.db, work)
    store = Store(work)  # migrates
    if store.get_user("bench") is None:
        auth.add_user(store, "bench", ADMIN_PW, "admin")
    store.close()
    data_dir = work.with_name(work.stem + "-data")
    proc = subprocess.Popen([sys.executable, "app.py", "--db", str(work), "--port", str(args.port), "--data-dir",
                             str(data_dir), "--base-url", "http://127.0.0.1:9/v1", "--model", "none"], cwd=HERE,
                            env=_env(HERE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(args.port)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
            page = b.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{args.port}/")
            page.get_by_label("username").fill("bench")
            page.get_by_label("password").fill(ADMIN_PW)
            page.get_by_role("button", name="Login").click()
            page.locator("#wl-header .wl-user").wait_for()
            _lineage(page, Path(args.out))
            _data(page, Path(args.out))
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for suffix in ("", "-wal", "-shm"):
            Path(str(work) + suffix).unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def _lineage(page, out: Path) -> None:
    page.get_by_role("tab", name="Lineage").click()
    page.get_by_label("Rule").click()
    page.get_by_role("option", name="no_information_gain").click()
    t = time.perf_counter()
    page.locator("#wl-lin-find").click()
    page.locator("#wl-lin-found", has_text="roots match").wait_for()
    print(f"lineage search (browser) {time.perf_counter() - t:.2f} s (load {load()})")
    t = time.perf_counter()
    page.locator("#wl-lin-next").click()
    page.locator("#wl-lin-found", has_text="page 2 of").wait_for()
    print(f"lineage next page (browser) {time.perf_counter() - t:.2f} s (load {load()})")
    page.locator("#wl-lin-roots [data-testid='cell-0-0']").click()
    page.locator("#wl-tree .wl-tree").wait_for()
    page.screenshot(path=str(out / "scale-lineage.png"), full_page=False)


def _data(page, out: Path) -> None:
    t = time.perf_counter()
    page.get_by_role("tab", name="Data").click()
    page.locator("#wl-data-summary .wl-stats").wait_for()
    print(f"data tab first show (browser) {time.perf_counter() - t:.2f} s (load {load()})")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "scale-data.png"), full_page=False)


if __name__ == "__main__":
    main()
