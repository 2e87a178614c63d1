"""External judgments into campaigns: PandaLM, llmfao, open-instruct, generic CSV, and the
Vicuna-80 GPT-4 reviews and FairEval human labels.

`import_judgments` reads a file with `wizardlab.evaluation.formats.load_judgments` (labels
already in model terms) and writes, in ONE transaction, whatever the campaign needs:
the campaign itself, a test set "import:<campaign>" with one prompt per item, an output
set per model, the items and the judgments (source "import", or "llm" with annotator
"llm:<name>" for verdict files of an LLM judge). Importing the same file twice adds
nothing.

`import_vicuna_reviews` turns FastChat's GPT-4 reviews (a score pair per question) into
LLM-judge judgments on an existing campaign over the Vicuna answers: the higher score
wins, equal scores tie, and both scores are kept (in model terms) for the capacity ratio. `import_faireval` adds FairEval's 80 aggregated human labels
(CHATGPT / VICUNA13B / TIE, one per line in question order) as one human annotator.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.evaluation.formats import load_judgments
from wizardlab.io import read_records


def import_judgments(store, path: str | Path, campaign: str, *, fmt: str = "auto", llm: bool = False,
                     created_by: str | None = None) -> dict:
    """Import a judgments file into campaign `campaign` (created when missing); returns counts."""
    rows = load_judgments(Path(path), fmt)
    testset = f"import:{campaign}"
    per_item = Counter(r["item"] for r in rows)
    added = 0
    with store.tx() as conn:
        cid = store.ensure_campaign(conn, campaign, k=max(per_item.values()), created_by=created_by,
                                    config={"imported_from": str(path), "format": fmt})
        prompt_ids = store.upsert_prompts(testset, _prompts(rows), conn=conn)
        items = {}
        for r in rows:
            key = r["item"]
            if key not in items:
                items[key] = _item(store, conn, cid, testset, prompt_ids[key], r)
            annotator = f"llm:{r['annotator']}" if llm else r["annotator"]
            added += store.insert_judgment(conn, cid, items[key], annotator, r["label"],
                                           source="llm" if llm else "import")
    return {"campaign_id": cid, "judgments_read": len(rows), "judgments_added": added, "items": len(items)}


def _prompts(rows: list[dict]) -> list[dict]:
    seen = {}
    for r in rows:
        seen.setdefault(r["item"], {"prompt_key": r["item"], "text": r["prompt"] or f"(item {r['item']})"})
    return list(seen.values())


def _item(store, conn, cid: int, testset: str, prompt_id: int, r: dict) -> int:
    if not r["model_a"] or not r["model_b"]:
        raise UserError(f"item {r['item']}: the file names no models (model_a, model_b columns)")
    outs = []
    for model, text in ((r["model_a"], r["response_a"]), (r["model_b"], r["response_b"])):
        sid = store.ensure_output_set(conn, f"{testset}/{model}", model, testset)
        outs.append(store.ensure_output(conn, sid, prompt_id, text or ""))
    return store.add_campaign_item(conn, cid, prompt_id, *outs)


def _answer_models(review_path: Path) -> dict[str, str]:
    """answer_id -> model_id from the Vicuna answer files next to the review directory."""
    answer_dir = review_path.resolve().parent.parent.parent / "answer"
    out = {}
    for f in sorted(answer_dir.glob("answer_*.jsonl")):
        for rec in read_records(f):
            row = rec.row
            if row.get("answer_id") and row.get("model_id"):
                out[row["answer_id"]] = row["model_id"]
    return out


def import_vicuna_reviews(store, campaign: dict, review_path: str | Path, judge: str = "gpt-4-review") -> dict:
    """GPT-4 score pairs as LLM-judge judgments "llm:<judge>" on the campaign's matching items."""
    review_path = Path(review_path)
    models = _answer_models(review_path)
    added = missing = 0
    with store.tx() as conn:
        for rec in read_records(review_path):
            row, n = rec.row, rec.number
            m1, m2 = models.get(row.get("answer1_id")), models.get(row.get("answer2_id"))
            score = row.get("score")
            if not m1 or not m2 or not isinstance(score, list) or len(score) != 2:
                raise UserError(f"{review_path.name} line {n}: field 'answer1_id'/'answer2_id'/'score' does not "
                                "name two known answers and a score pair")
            item = store.find_item(campaign["id"], str(row["question_id"]), {m1, m2})
            if item is None:
                missing += 1
                continue
            winner = m1 if score[0] > score[1] else m2 if score[1] > score[0] else None
            label = "tie" if winner is None else ("a" if winner == item["model_a"] else "b")
            scores = (score[0], score[1]) if m1 == item["model_a"] else (score[1], score[0])
            store.insert_judgment(conn, campaign["id"], item["item_id"], f"llm:{judge}", label, source="llm",
                                  rationale=f"scores {score[0]} / {score[1]}", replace=True,
                                  scores=tuple(map(float, scores)) if min(score) >= 0 else None)  # -1: unparsed
            added += 1
    return {"judged": added, "not_in_campaign": missing}


def import_faireval(store, campaign: dict, path: str | Path, *, chatgpt: str, vicuna: str,
                    annotator: str = "faireval-humans") -> dict:
    """FairEval's aggregated human label per Vicuna question (line i = question i) as one annotator."""
    path = Path(path)
    names = {"CHATGPT": chatgpt, "VICUNA13B": vicuna}
    added = 0
    with store.tx() as conn:
        for qid, line in enumerate(path.read_text(encoding="utf-8").split(), 1):
            if line not in (*names, "TIE"):
                raise UserError(f"{path.name} line {qid}: label {line!r} is not CHATGPT, VICUNA13B or TIE")
            item = store.find_item(campaign["id"], str(qid), {chatgpt, vicuna})
            if item is None:
                raise UserError(f"{path.name} line {qid}: campaign has no item for question {qid} with "
                                f"{chatgpt} and {vicuna}")
            label = "tie" if line == "TIE" else ("a" if names[line] == item["model_a"] else "b")
            store.insert_judgment(conn, campaign["id"], item["item_id"], annotator, label, source="import",
                                  replace=True)
            added += 1
    return {"judged": added}
