"""Training throughput: tokens/s (and MFU on GPUs) of the real SFT path, per base model and setup.

Each case runs `python -m pipeline train` (the same launcher, script and progress file
as the app) for a few steps on the Alpaca seed tasks, then reads `progress.jsonl`:
tokens/s is measured from the end of the first step to the end of the last one, so model
loading, DeepSpeed start-up and the first (warm-up) step do not count. MFU = tokens/s x
6 x parameters / peak FLOP/s (the usual dense-transformer estimate; attention FLOPs left
out), printed only when a GPU peak is known or given.

    python bench/train_throughput.py                                   # tiny-llama and embedded Gemma, CPU
    python bench/train_throughput.py --models embedded --setups plain zero3 --steps 20 --batch-size 8
    python bench/train_throughput.py --models embedded --setups plain zero2 zero3 --gpu-precision bf16 \
        --steps 30 --batch-size 8 --max-length 512                    # on a GPU machine

On a GPU it prints the GPU's name, tokens/s per GPU, MFU and the peak GPU memory of rank 0
(from `progress.jsonl`, `peak_mem_gb`); on a CPU the last two are "-".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wizardlab.config import default_cache_dir  # noqa: E402
from wizardlab.training import read_progress, resolve_model  # noqa: E402

SEEDS = REPO.parent / "shared" / "data" / "seeds" / "alpaca_seed_tasks.jsonl"
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense bf16
SETUPS = {"plain": [], "zero2": ["--deepspeed", "zero2"], "zero3": ["--deepspeed", "zero3"]}


def alpaca_file(folder: Path) -> Path:
    rows = [json.loads(line) for line in SEEDS.open()]
    items = [{"instruction": r["instruction"], "input": r["instances"][0]["input"],
              "output": r["instances"][0]["output"]} for r in rows]
    path = folder / "alpaca.json"
    path.write_text(json.dumps(items))
    return path


def parameters(model_dir: str) -> int:
    from safetensors import safe_open

    total = 0
    for file in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(file), "pt") as fh:
            for name in fh.keys():
                shape = fh.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def run_case(model: str, setup: str, args, data: Path, work: Path) -> dict:
    out = work / f"{Path(model).name}-{setup}"
    argv = [sys.executable, "-m", "pipeline", "train", "--data", str(data), "--model", model, "--out", str(out),
            "--preset", "cpu-smoke", "--max-steps", str(args.steps), "--max-length", str(args.max_length),
            "--batch-size", str(args.batch_size), "--save-steps", str(args.steps * 10), "--nproc", str(args.nproc),
            *SETUPS[setup], *([] if args.gpu_precision is None else ["--precision", args.gpu_precision])]
    start = time.time()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        log = (out / "train.log").read_text()[-3000:] if (out / "train.log").exists() else ""
        return {"model": model, "setup": setup, "error": (proc.stderr[-1500:] + log)}
    steps = [r for r in read_progress(out) if "loss" in r]
    if len(steps) < 2:
        return {"model": model, "setup": setup, "error": f"only {len(steps)} logged steps: raise --steps"}
    first, last = steps[0], steps[-1]
    tokens_per_s = (last["tokens"] - first["tokens"]) / max(last["time"] - first["time"], 1e-9)
    peaks = [r["peak_mem_gb"] for r in steps if r.get("peak_mem_gb") is not None]
    return {"model": model, "setup": setup, "steps": len(steps), "tokens_per_s": tokens_per_s, "wall_s": wall,
            "loss_first": first["loss"], "loss_last": last["loss"], "peak_mem_gb": max(peaks) if peaks else None}


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores, no GPU)"


def peak_flops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return tflops * 1e12 * max(1, args.nproc) if tflops else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-llama", "embedded"])
    parser.add_argument("--setups", nargs="+", default=["plain"], choices=list(SETUPS))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per run")
    parser.add_argument("--gpu-precision", default=None, choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of all devices, for MFU")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    peak = peak_flops(args)
    print(f"device: {device_name()}; {args.nproc} process(es); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'model':<14} {'setup':<6} {'params':>8} {'steps':>5} {'tok/s/dev':>10} {'MFU':>7} {'peak GiB':>8} "
          f"{'wall s':>7} loss")
    with tempfile.TemporaryDirectory(prefix="wl-bench-") as tmp:
        data = alpaca_file(Path(tmp))
        for model in args.models:
            n_params = parameters(resolve_model(model, default_cache_dir()))
            for setup in args.setups:
                r = run_case(model, setup, args, data, Path(tmp))
                if "error" in r:
                    print(f"{model:<14} {setup:<6} failed:\n{r['error']}")
                    continue
                mfu = f"{100 * r['tokens_per_s'] * 6 * n_params / peak:.1f}%" if peak else "-"
                mem = f"{r['peak_mem_gb']:.2f}" if r["peak_mem_gb"] is not None else "-"
                print(f"{model:<14} {setup:<6} {n_params / 1e6:>7.1f}M {r['steps']:>5} "
                      f"{r['tokens_per_s'] / args.nproc:>10.0f} {mfu:>7} {mem:>8} {r['wall_s']:>7.1f} "
                      f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
