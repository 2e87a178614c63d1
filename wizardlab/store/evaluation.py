"""Evaluation data: prompts, output sets, campaigns, assignments and judgments.

Every SQL statement of the evaluation half lives here. Labels are stored in MODEL terms
(`a` = the item's first output, `b` = its second, `tie`, `both_bad`), never left/right;
`a_on_left` records what an annotator saw. Assignment and judging run in short
BEGIN IMMEDIATE transactions, so many annotators at once never collide:

- an annotator never gets the same item twice (UNIQUE(item, annotator));
- an item is handed out until it has `k` live (open or done) assignments; attention-check
  and gold items (known answer) go to every annotator; a repeat item (a real item again with
  its sides swapped) goes to each annotator who judged the original, once they have judged
  `REPEAT_GAP` items since; a paused rater gets nothing (`campaign_raters`) and their votes no
  longer fill an item's k slots (others take them, so each item can still reach k trusted votes);
- gold items alternate sides per annotator (the good answer left, then right, ...), so a rater
  who always clicks one side scores half on them;
- only `real` items count in results (`kind`: real | attention | gold | repeat);
- a judgment is stored once: a repeated request id or a second submit of the same
  assignment returns the stored judgment instead of writing another.

This module does not compute statistics (see `wizardlab.evaluation.stats`) nor decide left/right
(the caller passes a function; `wizardlab.evaluation` hashes campaign, item, annotator).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable

from wizardlab.errors import PermissionDenied, UserError
from wizardlab.store.base import dumps

DISPLAY_TO_MODEL = {("1", 1): "a", ("1", 0): "b", ("2", 1): "b", ("2", 0): "a"}
REPEAT_GAP = 3  # judgments between an item and its swapped repeat
# Items the annotator :who may take next in campaign `c` (alias `i` = campaign_items).
_ELIGIBLE = (
    " NOT EXISTS (SELECT 1 FROM assignments s WHERE s.item_id = i.id AND s.annotator = :who) AND CASE i.kind"
    " WHEN 'real' THEN (SELECT COUNT(*) FROM assignments s WHERE s.item_id = i.id AND s.status != 'skipped'"
    "   AND s.annotator NOT IN (SELECT r.annotator FROM campaign_raters r WHERE r.campaign_id = i.campaign_id"
    "   AND r.status = 'paused')) < c.k"
    " WHEN 'repeat' THEN EXISTS (SELECT 1 FROM assignments o WHERE o.item_id = i.repeat_of AND o.annotator = :who"
    "   AND o.status = 'done' AND (SELECT COUNT(*) FROM assignments l WHERE l.campaign_id = i.campaign_id"
    "   AND l.annotator = :who AND l.status = 'done' AND l.id > o.id) >= :gap)"
    " ELSE 1 END")



# An item's two outputs and the models that wrote them (aliases oa/ob, sa/sb), for `i` = campaign_items.
_PAIR_MODELS = (" JOIN outputs oa ON oa.id = i.output_a JOIN output_sets sa ON sa.id = oa.output_set_id"
                " JOIN outputs ob ON ob.id = i.output_b JOIN output_sets sb ON sb.id = ob.output_set_id")

class EvalQueries:
    # -- prompts -----------------------------------------------------------------
    def upsert_prompts(self, testset: str, rows: Iterable[dict], conn: sqlite3.Connection | None = None) -> dict:
        """Insert prompts (prompt_key, text, skill, category, difficulty); return {prompt_key: id}.

        A prompt already stored under the same key keeps its id; its metadata is filled in
        where it was missing.
        """
        with self.tx() as c:
            c = conn or c
            ids = {}
            for r in rows:
                key = str(r["prompt_key"])
                c.execute(
                    "INSERT INTO prompts (testset, prompt_key, text, skill, category, difficulty) VALUES (?,?,?,?,?,?)"
                    " ON CONFLICT(testset, prompt_key) DO UPDATE SET"
                    " skill = COALESCE(prompts.skill, excluded.skill),"
                    " category = COALESCE(prompts.category, excluded.category),"
                    " difficulty = COALESCE(prompts.difficulty, excluded.difficulty)",
                    (testset, key, r["text"], r.get("skill"), r.get("category"), r.get("difficulty")))
                ids[key] = c.execute("SELECT id FROM prompts WHERE testset = ? AND prompt_key = ?",
                                     (testset, key)).fetchone()[0]
            return ids

    def prompts_of(self, testset: str) -> list[dict]:
        return self.query("SELECT * FROM prompts WHERE testset = ? ORDER BY id", (testset,))

    def testsets(self) -> list[dict]:
        return self.query("SELECT testset, COUNT(*) AS n FROM prompts GROUP BY testset ORDER BY testset")

    # -- output sets -------------------------------------------------------------
    def create_output_set(self, name: str, model: str, testset: str, source: str, *, run_id: int | None = None,
                          outputs: Iterable[tuple[int, str]] = (), conn: sqlite3.Connection | None = None) -> int:
        """A new output set with its outputs [(prompt_id, text)], in one transaction."""
        with self.tx() as c:
            c = conn or c
            if c.execute("SELECT 1 FROM output_sets WHERE name = ?", (name,)).fetchone():
                raise UserError(f"output set {name!r} already exists; choose another --name")
            set_id = c.execute("INSERT INTO output_sets (name, model, testset, source, run_id) VALUES (?,?,?,?,?)",
                               (name, model, testset, source, run_id)).lastrowid
            c.executemany("INSERT OR IGNORE INTO outputs (output_set_id, prompt_id, text) VALUES (?,?,?)",
                          [(set_id, pid, text) for pid, text in outputs])
            return set_id

    def output_ids_by_prompt(self, output_set_id: int, conn: sqlite3.Connection | None = None) -> dict[int, int]:
        """{prompt_id: output id} of an output set (inside `conn`'s transaction when given)."""
        rows = (conn or self.conn).execute("SELECT id, prompt_id FROM outputs WHERE output_set_id = ?",
                                           (output_set_id,)).fetchall()
        return {r[1]: r[0] for r in rows}

    def add_outputs(self, output_set_id: int, outputs: Iterable[tuple[int, str]]) -> int:
        with self.tx() as c:
            cur = c.executemany("INSERT OR IGNORE INTO outputs (output_set_id, prompt_id, text) VALUES (?,?,?)",
                                [(output_set_id, pid, text) for pid, text in outputs])
            return cur.rowcount

    def output_set(self, ref: int | str) -> dict | None:
        """An output set by id or name, with its output count."""
        sql = ("SELECT s.*, (SELECT COUNT(*) FROM outputs o WHERE o.output_set_id = s.id) AS n_outputs"
               " FROM output_sets s WHERE ")
        if isinstance(ref, int) or str(ref).isdigit():
            row = self.query_one(sql + "s.id = ?", (int(ref),))
            if row:
                return row
        return self.query_one(sql + "s.name = ?", (str(ref),))

    def output_set_by_run(self, run_id: int) -> dict | None:
        return self.query_one("SELECT * FROM output_sets WHERE run_id = ?", (run_id,))

    def list_output_sets(self) -> list[dict]:
        return self.query("SELECT s.id, s.name, s.model, s.testset, s.source, s.run_id, s.created_at,"
                          " (SELECT COUNT(*) FROM outputs o WHERE o.output_set_id = s.id) AS n_outputs"
                          " FROM output_sets s ORDER BY s.id")

    def outputs_of(self, output_set_id: int) -> list[dict]:
        return self.query("SELECT o.id, o.prompt_id, o.text, p.prompt_key FROM outputs o"
                          " JOIN prompts p ON p.id = o.prompt_id WHERE o.output_set_id = ? ORDER BY o.prompt_id",
                          (output_set_id,))

    def done_prompt_ids(self, output_set_id: int) -> set[int]:
        return {r["prompt_id"] for r in self.query("SELECT prompt_id FROM outputs WHERE output_set_id = ?",
                                                    (output_set_id,))}

    # -- campaigns ---------------------------------------------------------------
    def create_campaign(self, name: str, *, guidelines: str, k: int, allow_both_bad: bool, config: dict,
                        created_by: str | None, items: Iterable[tuple], conn: sqlite3.Connection | None = None) -> int:
        """A campaign and its items [(prompt_id, output_a, output_b, attention_label[, kind, gold_kind])]
        in one transaction (kind: real, or attention when a label is given and no kind)."""
        with self.tx() as c:
            c = conn or c
            if c.execute("SELECT 1 FROM campaigns WHERE name = ?", (name,)).fetchone():
                raise UserError(f"campaign {name!r} already exists; choose another name")
            cid = c.execute("INSERT INTO campaigns (name, guidelines, k, allow_both_bad, config, created_by)"
                            " VALUES (?,?,?,?,?,?)",
                            (name, guidelines, k, int(allow_both_bad), dumps(config), created_by)).lastrowid
            rows = [(cid, *it[:4], it[4] if len(it) > 4 else ("real" if it[3] is None else "attention"),
                     it[5] if len(it) > 5 else None) for it in items]
            c.executemany("INSERT OR IGNORE INTO campaign_items (campaign_id, prompt_id, output_a, output_b,"
                          " attention_label, kind, gold_kind) VALUES (?,?,?,?,?,?,?)", rows)
            return cid

    def add_repeat_items(self, conn: sqlite3.Connection, campaign_id: int, item_ids: Iterable[int]) -> int:
        """A repeat of each real item: the same pair with its outputs swapped (shown later, sides swapped)."""
        return conn.executemany(
            "INSERT OR IGNORE INTO campaign_items (campaign_id, prompt_id, output_a, output_b, kind, repeat_of)"
            " SELECT campaign_id, prompt_id, output_b, output_a, 'repeat', id FROM campaign_items"
            " WHERE id = ? AND campaign_id = ? AND kind = 'real'", [(i, campaign_id) for i in item_ids]).rowcount

    def real_item_ids(self, conn: sqlite3.Connection, campaign_id: int) -> list[int]:
        return [r[0] for r in conn.execute("SELECT id FROM campaign_items WHERE campaign_id = ? AND kind = 'real'"
                                           " ORDER BY id", (campaign_id,)).fetchall()]

    def set_campaign_status_in(self, conn: sqlite3.Connection, campaign_id: int, status: str) -> None:
        conn.execute("UPDATE campaigns SET status = ? WHERE id = ?", (status, campaign_id))

    def add_campaign_item(self, conn: sqlite3.Connection, campaign_id: int, prompt_id: int, output_a: int,
                          output_b: int) -> int:
        conn.execute("INSERT OR IGNORE INTO campaign_items (campaign_id, prompt_id, output_a, output_b)"
                     " VALUES (?,?,?,?)", (campaign_id, prompt_id, output_a, output_b))
        return conn.execute("SELECT id FROM campaign_items WHERE campaign_id = ? AND prompt_id = ? AND output_a = ?"
                            " AND output_b = ?", (campaign_id, prompt_id, output_a, output_b)).fetchone()[0]

    def campaign(self, ref: int | str) -> dict | None:
        row = None
        if isinstance(ref, int) or str(ref).isdigit():
            row = self.query_one("SELECT * FROM campaigns WHERE id = ?", (int(ref),))
        row = row or self.query_one("SELECT * FROM campaigns WHERE name = ?", (str(ref),))
        if row:
            row["config"] = json.loads(row["config"] or "{}")
        return row

    def list_campaigns(self) -> list[dict]:
        return self.query(
            "SELECT c.id, c.name, c.k, c.status, c.created_at,"
            " (SELECT COUNT(*) FROM campaign_items i WHERE i.campaign_id = c.id) AS n_items,"
            " (SELECT COUNT(*) FROM judgments j WHERE j.campaign_id = c.id) AS n_judgments"
            " FROM campaigns c ORDER BY c.id")

    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE campaigns SET status = ? WHERE id = ?", (status, campaign_id))

    def campaign_pairs(self, campaign_id: int) -> list[dict]:
        """The model pairs of a campaign with their item counts (attention checks excluded)."""
        return self.query(
            "SELECT sa.model AS model_a, sb.model AS model_b, COUNT(*) AS n FROM campaign_items i"
            + _PAIR_MODELS +
            " WHERE i.campaign_id = ? AND i.kind = 'real' GROUP BY sa.model, sb.model", (campaign_id,))

    def campaign_items(self, campaign_id: int, *, include_attention: bool = False) -> list[dict]:
        """Items with prompt text and metadata, both outputs and their models (server side only); only
        real items unless `include_attention` (then attention, gold and repeat items too)."""
        where = "" if include_attention else " AND i.kind = 'real'"
        return self.query(
            "SELECT i.id AS item_id, i.attention_label, i.kind, i.gold_kind, i.repeat_of, p.id AS prompt_id, p.prompt_key, p.text AS prompt,"
            " p.skill, p.category, p.difficulty, oa.text AS response_a, ob.text AS response_b,"
            " sa.model AS model_a, sb.model AS model_b FROM campaign_items i JOIN prompts p ON p.id = i.prompt_id"
            + _PAIR_MODELS +
            f" WHERE i.campaign_id = ?{where} ORDER BY i.id", (campaign_id,))

    # -- assignment --------------------------------------------------------------
    def next_assignment(self, campaign_id: int, annotator: str, a_on_left: Callable[[int], bool],
                        pair_rank: dict[tuple[int, int], int] | None = None) -> int | None:
        """The annotator's open assignment, or a new one on the next item that needs a judge; None when done
        or when the rater is paused. A repeat that is due comes first (shown as the original was, sides
        swapped); then items in id order, or with `pair_rank` ({(output set a, output set b): rank}) real
        items of the lowest-ranked pair first (routing to the widest intervals).

        One BEGIN IMMEDIATE transaction, so two annotators never both take an item's last slot.
        """
        with self.tx() as c:
            if c.execute("SELECT 1 FROM campaign_raters WHERE campaign_id = ? AND annotator = ? AND status = 'paused'",
                         (campaign_id, annotator)).fetchone():
                return None
            row = c.execute("SELECT id FROM assignments WHERE campaign_id = ? AND annotator = ? AND status = 'open'"
                            " ORDER BY id DESC LIMIT 1", (campaign_id, annotator)).fetchone()
            if row:
                return row[0]
            params = {"cid": campaign_id, "who": annotator, "gap": REPEAT_GAP}
            rank = ""
            if pair_rank:
                whens = []
                for n, ((sa, sb), r) in enumerate(pair_rank.items()):
                    whens.append(f" WHEN oa.output_set_id = :sa{n} AND ob.output_set_id = :sb{n} THEN :r{n}")
                    params.update({f"sa{n}": sa, f"sb{n}": sb, f"r{n}": r})
                rank = f"CASE WHEN i.kind != 'real' THEN 0{''.join(whens)} ELSE {len(pair_rank)} END, "
            sql = ("SELECT i.id, i.kind, i.repeat_of FROM campaign_items i JOIN campaigns c ON c.id = i.campaign_id"
                   " JOIN outputs oa ON oa.id = i.output_a JOIN outputs ob ON ob.id = i.output_b"
                   f" WHERE i.campaign_id = :cid AND c.status = 'open' AND {_ELIGIBLE}"
                   f" ORDER BY i.kind = 'repeat' DESC, {rank}i.id LIMIT 1")
            item = c.execute(sql, params).fetchone() or c.execute(sql, {**params, "gap": 0}).fetchone()
            if item is None:  # (with nothing else left, a repeat comes without waiting for its gap)
                return None
            if item["kind"] == "repeat":  # the original's a_on_left shows the swapped pair's sides swapped
                left = c.execute("SELECT a_on_left FROM assignments WHERE item_id = ? AND annotator = ?",
                                 (item["repeat_of"], annotator)).fetchone()[0]
            elif item["kind"] == "gold" and (prev := c.execute(
                    "SELECT s.a_on_left FROM assignments s JOIN campaign_items g ON g.id = s.item_id"
                    " WHERE s.campaign_id = ? AND s.annotator = ? AND g.kind = 'gold' ORDER BY s.id DESC LIMIT 1",
                    (campaign_id, annotator)).fetchone()):
                left = 1 - prev[0]
            else:
                left = int(bool(a_on_left(item["id"])))
            return c.execute("INSERT INTO assignments (campaign_id, item_id, annotator, a_on_left) VALUES (?,?,?,?)",
                             (campaign_id, item["id"], annotator, left)).lastrowid

    def assignment_view(self, assignment_id: int, annotator: str) -> dict:
        """What the annotator is shown: prompt and the two responses in display order. Raises if not theirs."""
        row = self.query_one(
            "SELECT s.id, s.annotator, s.status, s.a_on_left, s.campaign_id, p.text AS prompt,"
            " oa.text AS response_a, ob.text AS response_b FROM assignments s"
            " JOIN campaign_items i ON i.id = s.item_id JOIN prompts p ON p.id = i.prompt_id"
            " JOIN outputs oa ON oa.id = i.output_a JOIN outputs ob ON ob.id = i.output_b WHERE s.id = ?",
            (assignment_id,))
        if row is None or row["annotator"] != annotator:
            raise PermissionDenied("this item is not assigned to you")
        left, right = (row["response_a"], row["response_b"]) if row["a_on_left"] else (row["response_b"], row["response_a"])
        return {"assignment_id": row["id"], "campaign_id": row["campaign_id"], "status": row["status"],
                "prompt": row["prompt"], "response_1": left, "response_2": right}

    def annotator_progress(self, campaign_id: int, annotator: str) -> dict:
        """done, skipped and total (done + open + items still available to this annotator)."""
        counts = dict(self.conn.execute(
            "SELECT status, COUNT(*) FROM assignments WHERE campaign_id = ? AND annotator = ? GROUP BY status",
            (campaign_id, annotator)).fetchall())
        available = self.scalar(
            "SELECT COUNT(*) FROM campaign_items i JOIN campaigns c ON c.id = i.campaign_id WHERE i.campaign_id = :cid"
            f" AND {_ELIGIBLE}", {"cid": campaign_id, "who": annotator, "gap": 0})
        done, open_, skipped = counts.get("done", 0), counts.get("open", 0), counts.get("skipped", 0)
        return {"done": done, "skipped": skipped, "total": done + open_ + available}

    def submit_judgment(self, assignment_id: int, annotator: str, choice: str, *, request_id: str,
                        rationale: str | None = None, seconds: float | None = None) -> dict:
        """Store the judgment of one assignment, once. `choice` is what was clicked: 1 | 2 | tie | both_bad.

        Returns {"judgment_id", "label", "duplicate", "elsewhere"}; a repeated request or assignment
        returns the judgment already stored with duplicate=True; elsewhere=True when that judgment
        came from another request (the same annotator in another browser tab), so nothing was stored.
        """
        if choice not in ("1", "2", "tie", "both_bad"):
            raise UserError(f"unknown choice {choice!r}; expected 1, 2, tie or both_bad")
        with self.tx() as c:
            old = c.execute("SELECT id, label, annotator FROM judgments WHERE request_id = ?", (request_id,)).fetchone()
            if old is not None:
                if old["annotator"] != annotator:
                    raise PermissionDenied("request id belongs to another annotator")
                return {"judgment_id": old["id"], "label": old["label"], "duplicate": True, "elsewhere": False}
            s = c.execute("SELECT s.*, c.allow_both_bad FROM assignments s JOIN campaigns c ON c.id = s.campaign_id"
                          " WHERE s.id = ?", (assignment_id,)).fetchone()
            if s is None or s["annotator"] != annotator:
                raise PermissionDenied("this item is not assigned to you")
            if s["status"] == "done":
                old = c.execute("SELECT id, label FROM judgments WHERE item_id = ? AND annotator = ?",
                                (s["item_id"], annotator)).fetchone()
                return {"judgment_id": old["id"], "label": old["label"], "duplicate": True, "elsewhere": True}
            if s["status"] != "open":
                raise UserError("this item was skipped; fetch the next one")
            if choice == "both_bad" and not s["allow_both_bad"]:
                raise UserError("this campaign has no 'both bad' label")
            label = DISPLAY_TO_MODEL.get((choice, s["a_on_left"]), choice)
            jid = c.execute("INSERT INTO judgments (campaign_id, item_id, annotator, label, a_on_left, rationale,"
                            " seconds, source, request_id) VALUES (?,?,?,?,?,?,?,'ui',?)",
                            (s["campaign_id"], s["item_id"], annotator, label, s["a_on_left"], rationale or None,
                             seconds, request_id)).lastrowid
            c.execute("UPDATE assignments SET status = 'done' WHERE id = ?", (assignment_id,))
            return {"judgment_id": jid, "label": label, "duplicate": False, "elsewhere": False}

    def skip_assignment(self, assignment_id: int, annotator: str) -> None:
        """Give an open item back: it is never shown to this annotator again and frees its slot."""
        with self.tx() as c:
            s = c.execute("SELECT annotator, status FROM assignments WHERE id = ?", (assignment_id,)).fetchone()
            if s is None or s["annotator"] != annotator:
                raise PermissionDenied("this item is not assigned to you")
            if s["status"] == "open":
                c.execute("UPDATE assignments SET status = 'skipped' WHERE id = ?", (assignment_id,))

    def undo_last_judgment(self, campaign_id: int, annotator: str) -> int | None:
        """Delete the annotator's newest UI judgment and reopen its item; returns its assignment id.

        The item the annotator was looking at instead is released (it had no judgment yet).
        """
        with self.tx() as c:
            j = c.execute("SELECT id, item_id FROM judgments WHERE campaign_id = ? AND annotator = ? AND source = 'ui'"
                          " ORDER BY id DESC LIMIT 1", (campaign_id, annotator)).fetchone()
            if j is None:
                return None
            c.execute("DELETE FROM judgments WHERE id = ?", (j["id"],))
            c.execute("DELETE FROM assignments WHERE campaign_id = ? AND annotator = ? AND status = 'open'",
                      (campaign_id, annotator))
            c.execute("UPDATE assignments SET status = 'open' WHERE item_id = ? AND annotator = ?",
                      (j["item_id"], annotator))
            return c.execute("SELECT id FROM assignments WHERE item_id = ? AND annotator = ?",
                             (j["item_id"], annotator)).fetchone()[0]

    def release_open_assignments(self, campaign_id: int, older_than_s: float) -> int:
        """Free open assignments nobody judged for `older_than_s` seconds (an annotator who left)."""
        with self.tx() as c:
            return c.execute(
                "DELETE FROM assignments WHERE campaign_id = ? AND status = 'open'"
                " AND (julianday('now') - julianday(created_at)) * 86400 > ?", (campaign_id, older_than_s)).rowcount

    # -- judgments ---------------------------------------------------------------
    def insert_judgment(self, conn: sqlite3.Connection, campaign_id: int, item_id: int, annotator: str, label: str,
                        *, source: str, rationale: str | None = None, seconds: float | None = None,
                        a_on_left: int | None = None, replace: bool = False,
                        scores: tuple[float, float] | None = None) -> int:
        """Insert (or with `replace`, overwrite) one judgment; returns 1 when a row was written, 0 when
        the annotator had already judged the item (and `replace` is off). `scores`: (score of
        output a, score of output b) for score-mode judgments."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        score_a, score_b = scores if scores is not None else (None, None)
        cur = conn.execute(f"{verb} INTO judgments (campaign_id, item_id, annotator, label, a_on_left, rationale, "
                           "seconds, source, score_a, score_b) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (campaign_id, item_id, annotator, label, a_on_left, rationale, seconds, source,
                            score_a, score_b))
        return cur.rowcount

    def judged_items(self, campaign_id: int, annotator: str) -> set[int]:
        return {r["item_id"] for r in self.query("SELECT item_id FROM judgments WHERE campaign_id = ? AND annotator = ?",
                                                  (campaign_id, annotator))}

    def campaign_judgments(self, campaign_id: int) -> list[dict]:
        """Every judgment with its item's models and prompt metadata, for reports (model terms)."""
        return self.query(
            "SELECT j.id, j.item_id, j.annotator, j.label, j.a_on_left, j.rationale, j.seconds, j.source,"
            " j.score_a, j.score_b,"
            " j.created_at, i.attention_label, i.kind, i.gold_kind, i.repeat_of, p.prompt_key, p.skill, p.category, p.difficulty,"
            " sa.model AS model_a, sb.model AS model_b FROM judgments j"
            " JOIN campaign_items i ON i.id = j.item_id JOIN prompts p ON p.id = i.prompt_id"
            + _PAIR_MODELS +
            " WHERE j.campaign_id = ? ORDER BY j.id", (campaign_id,))

    def campaign_progress(self, campaign_id: int) -> list[dict]:
        """Per annotator: done, skipped, open assignments, judgments and mean seconds per item."""
        return self.query(
            "SELECT a.annotator, SUM(a.status = 'done') AS done, SUM(a.status = 'skipped') AS skipped,"
            " SUM(a.status = 'open') AS open,"
            " (SELECT AVG(j.seconds) FROM judgments j WHERE j.campaign_id = a.campaign_id"
            "  AND j.annotator = a.annotator) AS mean_seconds"
            " FROM assignments a WHERE a.campaign_id = ? GROUP BY a.annotator ORDER BY a.annotator", (campaign_id,))

    def campaign_fill(self, campaign_id: int) -> dict:
        """How many real items have 0..k judgments."""
        rows = self.query(
            "SELECT n, COUNT(*) AS items FROM (SELECT i.id, (SELECT COUNT(*) FROM judgments j WHERE j.item_id = i.id"
            " AND j.source != 'llm') AS n FROM campaign_items i WHERE i.campaign_id = ? AND i.kind = 'real')"
            " GROUP BY n ORDER BY n", (campaign_id,))
        return {r["n"]: r["items"] for r in rows}

    # -- imports (inside the caller's transaction) -----------------------------------
    def ensure_output_set(self, conn: sqlite3.Connection, name: str, model: str, testset: str) -> int:
        row = conn.execute("SELECT id, model FROM output_sets WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0]
        return conn.execute("INSERT INTO output_sets (name, model, testset, source) VALUES (?,?,?,'import')",
                            (name, model, testset)).lastrowid

    def ensure_output(self, conn: sqlite3.Connection, output_set_id: int, prompt_id: int, text: str) -> int:
        conn.execute("INSERT OR IGNORE INTO outputs (output_set_id, prompt_id, text) VALUES (?,?,?)",
                     (output_set_id, prompt_id, text))
        return conn.execute("SELECT id FROM outputs WHERE output_set_id = ? AND prompt_id = ?",
                            (output_set_id, prompt_id)).fetchone()[0]

    def ensure_campaign(self, conn: sqlite3.Connection, name: str, *, k: int, config: dict,
                        created_by: str | None = None) -> int:
        row = conn.execute("SELECT id FROM campaigns WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0]
        # imported campaigns are for analysis: closed, so annotators are not offered them
        return conn.execute("INSERT INTO campaigns (name, guidelines, k, status, config, created_by)"
                            " VALUES (?,?,?,'closed',?,?)", (name, "", k, dumps(config), created_by)).lastrowid

    def find_item(self, campaign_id: int, prompt_key: str, models: set[str]) -> dict | None:
        """The campaign item on `prompt_key` whose two models are `models` (with the models' order)."""
        for r in self.query(
                "SELECT i.id AS item_id, sa.model AS model_a, sb.model AS model_b FROM campaign_items i"
                " JOIN prompts p ON p.id = i.prompt_id" + _PAIR_MODELS +
                " WHERE i.campaign_id = ? AND p.prompt_key = ? AND i.kind = 'real'", (campaign_id, str(prompt_key))):
            if {r["model_a"], r["model_b"]} == models:
                return r
        return None

    def pair_tallies(self, campaign_id: int) -> list[dict]:
        """Per pair of output sets over real items: human judgments n, wins of a, ties (for routing)."""
        return self.query(
            "SELECT oa.output_set_id AS set_a, ob.output_set_id AS set_b, COUNT(j.id) AS n,"
            " SUM(j.label = 'a') AS wins, SUM(j.label IN ('tie', 'both_bad')) AS ties FROM campaign_items i"
            " JOIN outputs oa ON oa.id = i.output_a JOIN outputs ob ON ob.id = i.output_b"
            " LEFT JOIN judgments j ON j.item_id = i.id AND j.source != 'llm'"
            " WHERE i.campaign_id = ? AND i.kind = 'real' GROUP BY oa.output_set_id, ob.output_set_id", (campaign_id,))

    # -- rater quality: gold tallies, paused raters ---------------------------------
    def gold_tally(self, campaign_id: int, annotator: str) -> tuple[int, int]:
        """(gold items judged, of which right) for one annotator."""
        row = self.query_one("SELECT COUNT(*) AS n, COALESCE(SUM(j.label = i.attention_label), 0) AS right"
                             " FROM judgments j JOIN campaign_items i ON i.id = j.item_id"
                             " WHERE j.campaign_id = ? AND j.annotator = ? AND i.kind = 'gold'",
                             (campaign_id, annotator))
        return row["n"], row["right"]

    def raters(self, campaign_id: int) -> dict[str, dict]:
        """{annotator: {status, reason, changed_by, changed_at}} of raters whose status was ever set."""
        return {r["annotator"]: r for r in self.query(
            "SELECT annotator, status, reason, changed_by, changed_at FROM campaign_raters WHERE campaign_id = ?"
            " ORDER BY annotator", (campaign_id,))}

    def set_rater_status(self, campaign_id: int, annotator: str, status: str, *, reason: str | None = None,
                         by: str | None = None) -> int:
        """Pause (their open items go back to the pool: returns how many) or resume a rater."""
        if status not in ("active", "paused"):
            raise UserError(f"rater status must be 'active' or 'paused', got {status!r}")
        with self.tx() as c:
            c.execute("INSERT INTO campaign_raters (campaign_id, annotator, status, reason, changed_by) VALUES (?,?,?,?,?)"
                      " ON CONFLICT(campaign_id, annotator) DO UPDATE SET status = excluded.status,"
                      " reason = excluded.reason, changed_by = excluded.changed_by,"
                      " changed_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')", (campaign_id, annotator, status, reason, by))
            if status != "paused":
                return 0
            return c.execute("DELETE FROM assignments WHERE campaign_id = ? AND annotator = ? AND status = 'open'",
                             (campaign_id, annotator)).rowcount

    # -- identity leaks (before blinding) -----------------------------------------
    def campaign_outputs(self, conn: sqlite3.Connection, campaign_id: int) -> list[dict]:
        """Every output shown in a campaign: {id, text} (inside the caller's transaction)."""
        return [dict(r) for r in conn.execute(
            "SELECT DISTINCT o.id, o.text FROM outputs o JOIN campaign_items i"
            " ON o.id IN (i.output_a, i.output_b) WHERE i.campaign_id = ? ORDER BY o.id", (campaign_id,)).fetchall()]

    def add_identity_hits(self, conn: sqlite3.Connection, campaign_id: int, hits: Iterable[tuple[int, str, str]]) -> int:
        """Record hits [(output id, match, context)]; one per output."""
        return conn.executemany("INSERT OR IGNORE INTO identity_hits (campaign_id, output_id, match, context)"
                                " VALUES (?,?,?,?)", [(campaign_id, *h) for h in hits]).rowcount

    def identity_hits(self, campaign_id: int, *, open_only: bool = False) -> list[dict]:
        """The campaign's hits with the output's text and model (admin only)."""
        where = " AND h.status = 'open'" if open_only else ""
        return self.query(
            "SELECT h.id, h.output_id, h.match, h.context, h.status, h.resolved_by, h.resolved_at, s.model,"
            " s.name AS output_set, o.text FROM identity_hits h JOIN outputs o ON o.id = h.output_id"
            f" JOIN output_sets s ON s.id = o.output_set_id WHERE h.campaign_id = ?{where} ORDER BY h.id",
            (campaign_id,))

    def resolve_identity_hit(self, campaign_id: int, hit_id: int, action: str, *, by: str | None = None,
                             text: str | None = None) -> dict:
        """`edit` (replace the output's text everywhere), `drop` (remove this campaign's items showing it and
        their repeats) or `keep` (a false alarm). Returns {"status", "open_left"}."""
        status = {"edit": "edited", "drop": "dropped", "keep": "kept"}.get(action)
        if status is None:
            raise UserError(f"resolve an identity hit with edit, drop or keep, not {action!r}")
        with self.tx() as c:
            h = c.execute("SELECT output_id FROM identity_hits WHERE id = ? AND campaign_id = ?",
                          (hit_id, campaign_id)).fetchone()
            if h is None:
                raise UserError(f"campaign {campaign_id} has no identity hit {hit_id}")
            if action == "edit":
                if not text or not text.strip():
                    raise UserError("give the edited text of the output")
                c.execute("UPDATE outputs SET text = ? WHERE id = ?", (text, h[0]))
            elif action == "drop":
                ids = [r[0] for r in c.execute("SELECT id FROM campaign_items WHERE campaign_id = ?"
                                               " AND ? IN (output_a, output_b)", (campaign_id, h[0])).fetchall()]
                c.executemany("DELETE FROM campaign_items WHERE repeat_of = ?", [(i,) for i in ids])
                c.executemany("DELETE FROM campaign_items WHERE id = ?", [(i,) for i in ids])
            c.execute("UPDATE identity_hits SET status = ?, resolved_by = ?,"
                      " resolved_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?", (status, by, hit_id))
            left = c.execute("SELECT COUNT(*) FROM identity_hits WHERE campaign_id = ? AND status = 'open'",
                             (campaign_id,)).fetchone()[0]
            return {"status": status, "open_left": left}
