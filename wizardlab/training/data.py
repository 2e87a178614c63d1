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
    examples = list(iter_examples(path))
    if not examples:
        raise UserError(f"{Path(path)}: no examples in the file")
    return examples


def count_examples(path: str | Path) -> int:
    """Check every item of a data file, reading it as a stream (constant memory); returns how many."""
    n = sum(1 for _ in iter_examples(path))
    if not n:
        raise UserError(f"{Path(path)}: no examples in the file")
    return n


def iter_examples(path: str | Path, chunk_chars: int = 1 << 20):
    """The checked examples of a JSON list or JSONL file, one at a time (the file is read in chunks)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such data file (export one with `python -m pipeline export --format alpaca`)")
    with open(path, encoding="utf-8") as fh:
        head = fh.read(chunk_chars)
        fh.seek(0)
        if head.lstrip().startswith("["):
            for where, item in _iter_json_list(path, fh, chunk_chars):
                yield _check_item(path, where, item)
            return
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
            yield _check_item(path, f"line {lineno}", item)


def _iter_json_list(path: Path, fh, chunk_chars: int):
    """(`item i`, value) of a JSON list, decoded item by item from a growing buffer."""
    decoder, buf, pos, line, i, eof = json.JSONDecoder(), fh.read(chunk_chars), 0, 1, 0, False
    pos = buf.index("[") + 1
    while True:
        while True:  # skip whitespace and the separating comma; refill when the buffer runs out
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos < len(buf) or eof:
                break
            more = fh.read(chunk_chars)
            eof = not more
            line += buf.count("\n")
            buf, pos = more, 0
        if pos >= len(buf):
            raise UserError(f"{path}: line {line}: not valid JSON (the list is not closed with ])")
        if buf[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            more = "" if eof else fh.read(chunk_chars)
            if not more:
                raise UserError(f"{path}: line {line + buf.count(chr(10), 0, exc.pos)}: not valid JSON "
                                f"({exc.msg})") from None
            line += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + more, 0
            continue
        yield f"item {i}", item
        i += 1
        pos = end


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


def encode_all(tokenizer, examples, max_length: int) -> tuple["EncodedSet", int]:
    """Encoded examples (held compactly: int32 token ids and the prompt length of each) and how many
    were dropped because their prompt is too long. `examples` may be any iterable (a stream)."""
    import numpy as np

    parts, lengths, prompts, dropped = [], [], [], 0
    for ex in examples:
        enc = encode_example(tokenizer, ex, max_length)
        if enc is None:
            dropped += 1
            continue
        parts.append(np.asarray(enc["input_ids"], dtype=np.int32))
        lengths.append(len(enc["input_ids"]))
        prompts.append(enc["labels"].count(IGNORE_INDEX))
    return EncodedSet(parts, lengths, prompts), dropped


class EncodedSet:
    """A sequence of {input_ids, labels} built on demand from one flat int32 array (4 bytes a token,
    not a Python list of ints per example); labels are -100 on the first `prompt` tokens."""

    def __init__(self, parts: list, lengths: list[int], prompts: list[int]) -> None:
        import numpy as np

        self.ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        self.starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self.prompts = np.asarray(prompts, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        ids = self.ids[self.starts[i]:self.starts[i + 1]].tolist()
        p = int(self.prompts[i])
        return {"input_ids": ids, "labels": [IGNORE_INDEX] * p + ids[p:]}


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
