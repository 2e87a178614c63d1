"""`python -m pipeline model-server`: list the background model servers, start one, or stop them.

A command that runs a local model (the embedded Gemma or a model directory) asks a model server
for it and starts one when none runs; the server keeps the model loaded for the next command and
exits by itself `WIZARDLAB_KEEP_MODEL_S` seconds (default 300) after its last answer
(see `wizardlab.llm.model_server`).
"""

from __future__ import annotations

import time

HELP = "List, start or stop the background servers that keep a local model loaded between commands."


def add_arguments(parser) -> None:
    parser.add_argument("--start", action="store_true",
                        help="start the server for --model (default: the embedded model) and load it now")
    parser.add_argument("--model", help="a local model directory (default: the embedded model)")
    parser.add_argument("--keep", type=float, default=None, metavar="SECONDS",
                        help="with --start: exit this long after the last answer (default 300 / WIZARDLAB_KEEP_MODEL_S)")
    parser.add_argument("--stop", action="store_true", help="stop every model server of this cache dir")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.errors import UserError
    from wizardlab.llm import PermanentError, model_server

    settings = Settings.from_env(model=args.model, keep_model_s=args.keep)
    if args.stop:
        stopped = model_server.stop_servers(settings.cache_dir)
        print(f"stopped {len(stopped)} model server(s)" + "".join(f"\n  pid {s['pid']}: {s['model']}" for s in stopped))
        return 0
    if args.start:
        if settings.keep_model_s <= 0:
            raise UserError("--start needs --keep above 0 (WIZARDLAB_KEEP_MODEL_S is 0: models load in each process)")
        start = time.perf_counter()
        try:
            loaded = model_server.start_and_load(settings)
        except PermanentError as exc:
            raise UserError(str(exc)) from None
        print(f"model server pid {loaded['pid']} holds {loaded['model']} ({loaded['precision']}, loaded in "
              f"{loaded['load_s']:.1f} s; {time.perf_counter() - start:.1f} s in all); it exits "
              f"{settings.keep_model_s:.0f} s after its last answer")
        return 0
    found = model_server.servers(settings.cache_dir)
    if not found:
        print(f"no model server runs (cache dir {settings.cache_dir})")
    for info in found:
        print(model_server.describe(info))
    return 0
