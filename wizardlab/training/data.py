"""SFT data: read an exported Alpaca file, build the prompt, tokenize with the loss on the response only.

The prompt follows the WizardLM training code: the instruction (and the input, when
there is one), a blank line, then `### Response:`; the response follows after a space
and ends with the tokenizer's end-of-sequence token. Prompt and response are tokenized
separately and concatenated, so the mask boundary is exact: labels are -100 on every
prompt token and on padding, and equal to the token ids on the response.

This module reads files and tokenizes; it does not train (see pipeline/train_sft.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from wizardlab.errors import UserError

IGNORE_INDEX = -100
RESPONSE_MARK = "### Response:"


# Saved with the fine-tuned tokenizer, so chat-style callers (e.g. wizardlab.llm.local) prompt the
# model exactly as it was trained: BOS, the user's text, a blank line, "### Response:".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'assistant' %} {{ m['content'] | trim }}{{ eos_token }}\n\n"
    "{% else %}{{ m['content'] | trim }}\n\n"
    "{% if m['role'] == 'user' %}" + RESPONSE_MARK + "{% endif %}{% endif %}{% endfor %}"
)


def format_prompt(instruction: str, input_text: str = "") -> str:
    """>>> format_prompt("Add 2 and 3.")
    'Add 2 and 3.\\n\\n### Response:'"""
    body = instruction.strip()
    if input_text and input_text.strip():
        body += "\n\n" + input_text.strip()
    return f"{body}\n\n{RESPONSE_MARK}"


def load_examples(path: str | Path) -> list[dict]:
    """An Alpaca JSON list (or JSONL) of {instruction, input, output}; one clear error per bad item."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such data file (export one with `python -m pipeline export --format alpaca`)")
    text = path.read_text(encoding="utf-8")
    items = _parse(path, text)
    examples = [_check_item(path, where, item) for where, item in items]
    if not examples:
        raise UserError(f"{path}: no examples in the file")
    return examples


def _parse(path: Path, text: str) -> list[tuple[str, object]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(f"item {i}", item) for i, item in enumerate(data)]
    items = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
    return items


def _check_item(path: Path, where: str, item) -> dict:
    if not isinstance(item, dict):
        raise UserError(f"{path}: {where}: expected an object with instruction/input/output")
    for name in ("instruction", "output"):
        value = item.get(name)
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{path}: {where}: field '{name}' is missing or empty")
    input_text = item.get("input", "")
    if input_text is None:
        input_text = ""
    if not isinstance(input_text, str):
        raise UserError(f"{path}: {where}: field 'input' must be text")
    return {"instruction": item["instruction"], "input": input_text, "output": item["output"]}


def encode_example(tokenizer, example: dict, max_length: int) -> dict | None:
    """input_ids and labels (-100 on the prompt); None when the prompt alone fills max_length."""
    prompt = format_prompt(example["instruction"], example.get("input", ""))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt_ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(" " + example["output"].strip(), add_special_tokens=False)["input_ids"]
    response_ids = response_ids + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    response_ids = response_ids[: max_length - len(prompt_ids)]
    return {"input_ids": prompt_ids + response_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + list(response_ids)}


def encode_all(tokenizer, examples: list[dict], max_length: int) -> tuple[list[dict], int]:
    """Encoded examples and how many were dropped because their prompt is too long."""
    encoded = [encode_example(tokenizer, ex, max_length) for ex in examples]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


class SFTCollator:
    """Right-pads a batch: pad id in input_ids, 0 in attention_mask, -100 in labels.

    `tokens` counts the real (non-padding) tokens collated so far, for throughput.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id
        self.tokens = 0

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        ids, labels, mask = [], [], []
        for item in batch:
            pad = width - len(item["input_ids"])
            ids.append(list(item["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(item["labels"]) + [IGNORE_INDEX] * pad)
            mask.append([1] * len(item["input_ids"]) + [0] * pad)
            self.tokens += len(item["input_ids"])
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}
