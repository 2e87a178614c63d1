"""Schema migrations, applied in order, each in its own transaction.

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3


def m001_core(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,              -- evolve | score | embed | train | generate | judge ...
            name TEXT,
            config TEXT NOT NULL DEFAULT '{}',   -- JSON of the run's settings
            config_key TEXT,                 -- identity used to find the same run again (resume)
            status TEXT NOT NULL DEFAULT 'pending', -- pending|queued|running|done|failed|cancelled
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            started_at TEXT,
            finished_at TEXT,
            created_by TEXT,
            pid INTEGER,
            exit_code INTEGER,
            error TEXT,
            log_path TEXT,
            progress TEXT NOT NULL DEFAULT '{}'  -- JSON, updated while running
        );
        CREATE INDEX runs_kind ON runs(kind, status);
        CREATE INDEX runs_key ON runs(kind, config_key);

        CREATE TABLE nodes (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES nodes(id),
            root_id INTEGER REFERENCES nodes(id),
            round INTEGER NOT NULL,
            operation TEXT,                  -- NULL for seeds
            instruction TEXT NOT NULL DEFAULT '',
            input TEXT NOT NULL DEFAULT '',
            response TEXT,
            status TEXT NOT NULL,            -- seed | pending | kept | eliminated
            fail_rules TEXT NOT NULL DEFAULT '[]', -- JSON list of rule codes
            error TEXT,
            raw TEXT NOT NULL DEFAULT '{}',  -- JSON: raw LLM text per step, never lost
            source_ref TEXT,                 -- where a seed came from (file:line or id)
            difficulty REAL,
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        CREATE UNIQUE INDEX nodes_one_per_round ON nodes(run_id, root_id, round) WHERE round > 0;
        CREATE INDEX nodes_run_round ON nodes(run_id, round, status);
        CREATE INDEX nodes_root ON nodes(root_id, round);
        CREATE INDEX nodes_parent ON nodes(parent_id);

        CREATE TABLE overrides (
            id INTEGER PRIMARY KEY,
            node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
            action TEXT NOT NULL CHECK (action IN ('restore', 'eliminate')),
            reason TEXT NOT NULL,
            user TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            undone_at TEXT,
            undone_by TEXT
        );
        CREATE INDEX overrides_node ON overrides(node_id, id);

        CREATE TABLE llm_calls (
            key TEXT PRIMARY KEY,            -- sha256 of backend, model, request and salt
            run_id INTEGER,
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            purpose TEXT,
            request TEXT NOT NULL,           -- JSON messages and parameters
            completion TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            latency_ms REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        CREATE INDEX llm_calls_run ON llm_calls(run_id);

        CREATE VIEW nodes_effective AS
        SELECT n.*,
               COALESCE(
                 (SELECT CASE o.action WHEN 'restore' THEN (CASE WHEN n.round = 0 THEN 'seed' ELSE 'kept' END)
                                       ELSE 'eliminated' END
                  FROM overrides o WHERE o.node_id = n.id AND o.undone_at IS NULL
                  ORDER BY o.id DESC LIMIT 1),
                 n.status) AS effective_status
        FROM nodes n;

        CREATE TABLE embeddings (
            text_hash TEXT NOT NULL,
            model TEXT NOT NULL,
            vector BLOB NOT NULL,            -- float32 little-endian
            PRIMARY KEY (text_hash, model)
        );

        CREATE TABLE reference_items (
            id INTEGER PRIMARY KEY,
            set_name TEXT NOT NULL,
            instruction TEXT NOT NULL
        );
        CREATE INDEX reference_items_set ON reference_items(set_name);
        """
    )


def m002_users(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'annotator')),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        """
    )


def m003_evaluation(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            testset TEXT NOT NULL,
            prompt_key TEXT NOT NULL,        -- idx / question_id / row number in the source
            text TEXT NOT NULL,
            skill TEXT,
            category TEXT,
            difficulty REAL,
            UNIQUE (testset, prompt_key)
        );

        CREATE TABLE output_sets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            testset TEXT NOT NULL,
            source TEXT NOT NULL,            -- import | generate
            run_id INTEGER REFERENCES runs(id),
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );

        CREATE TABLE outputs (
            id INTEGER PRIMARY KEY,
            output_set_id INTEGER NOT NULL REFERENCES output_sets(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            text TEXT NOT NULL,
            UNIQUE (output_set_id, prompt_id)
        );

        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            guidelines TEXT NOT NULL DEFAULT '',
            k INTEGER NOT NULL DEFAULT 3,
            allow_both_bad INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'open',  -- open | closed
            config TEXT NOT NULL DEFAULT '{}',
            created_by TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );

        CREATE TABLE campaign_items (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            output_a INTEGER NOT NULL REFERENCES outputs(id),  -- the pair, in model terms:
            output_b INTEGER NOT NULL REFERENCES outputs(id),  -- a = first model, b = second
            attention_label TEXT,            -- known answer for attention checks (a|b|tie)
            UNIQUE (campaign_id, prompt_id, output_a, output_b)
        );
        CREATE INDEX campaign_items_c ON campaign_items(campaign_id);

        CREATE TABLE assignments (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES campaign_items(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            a_on_left INTEGER NOT NULL,      -- 1 when output_a was shown as Response 1
            status TEXT NOT NULL DEFAULT 'open',  -- open | done | skipped
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            UNIQUE (item_id, annotator)
        );
        CREATE INDEX assignments_c ON assignments(campaign_id, annotator, status);

        CREATE TABLE judgments (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES campaign_items(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,         -- username, external name, or llm:<model>
            label TEXT NOT NULL,             -- in model terms: a | b | tie | both_bad
            a_on_left INTEGER,               -- what the annotator saw; NULL for imports
            rationale TEXT,
            seconds REAL,
            source TEXT NOT NULL DEFAULT 'ui', -- ui | import | llm
            request_id TEXT UNIQUE,          -- idempotency key from the client
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            UNIQUE (item_id, annotator)
        );
        CREATE INDEX judgments_c ON judgments(campaign_id, annotator);
        """
    )


def m004_job_process(conn: sqlite3.Connection) -> None:
    """The start time of a job's process, so a pid reused by another process is never signalled;
    and an index for the runs a job runner polls (active ones)."""
    conn.executescript(
        """
        ALTER TABLE runs ADD COLUMN pid_started REAL;
        CREATE INDEX runs_status ON runs(status);
        """
    )


def m005_call_outcomes(conn: sqlite3.Connection) -> None:
    """Why an answer ended (finish_reason "length" = cut off at max_tokens) for cached calls and for
    a node's response; and failed calls kept retryable: a node whose call failed after all retries
    stays pending with its attempts and last error (`evolve` retries it; giving up makes it malformed)."""
    conn.executescript(
        """
        ALTER TABLE llm_calls ADD COLUMN finish_reason TEXT;
        ALTER TABLE nodes ADD COLUMN finish_reason TEXT;
        ALTER TABLE nodes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE nodes ADD COLUMN last_error TEXT;
        CREATE INDEX nodes_failed_calls ON nodes(run_id, round) WHERE status = 'pending' AND attempts > 0;
        """
    )


def m006_experiments(conn: sqlite3.Connection) -> None:
    """Data recipes (named stored filters over the forest), their exports (row count, content hash,
    profile), and experiments: arms (recipe + base model + preset) whose steps are runs."""
    conn.executescript(
        """
        CREATE TABLE recipes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            spec TEXT NOT NULL,              -- JSON of wizardlab.recipes.Recipe
            created_by TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        CREATE TABLE recipe_exports (
            id INTEGER PRIMARY KEY,
            recipe_id INTEGER NOT NULL REFERENCES recipes(id) ON DELETE CASCADE,
            spec TEXT NOT NULL,              -- the recipe as it was when exported
            path TEXT NOT NULL,
            format TEXT NOT NULL,
            n_rows INTEGER NOT NULL,
            content_hash TEXT NOT NULL,      -- sha256 of the written file
            profile TEXT NOT NULL,           -- JSON: counts per round and operation, difficulty, dispersion
            run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        CREATE INDEX recipe_exports_r ON recipe_exports(recipe_id);
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            config TEXT NOT NULL,            -- JSON of wizardlab.experiments.ExperimentConfig
            status TEXT NOT NULL DEFAULT 'draft', -- draft | running | done | failed | cancelled
            error TEXT,
            driver_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            campaign_id INTEGER REFERENCES campaigns(id) ON DELETE SET NULL,
            judge_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            created_by TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        CREATE TABLE experiment_arms (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            recipe_id INTEGER NOT NULL REFERENCES recipes(id),
            base_model TEXT NOT NULL,
            preset TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0,  -- bumped by a retry (new output directories)
            export_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            train_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            generate_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            UNIQUE (experiment_id, name)
        );
        """
    )


def m007_judgment_scores(conn: sqlite3.Connection) -> None:
    """Score-mode judgments (Vicuna's protocol: both answers scored 1-10 in one review): the
    scores of the item's two outputs in model terms, beside the label they imply."""
    conn.executescript(
        """
        ALTER TABLE judgments ADD COLUMN score_a REAL;
        ALTER TABLE judgments ADD COLUMN score_b REAL;
        """
    )


def m008_curators(conn: sqlite3.Connection) -> None:
    """The `curator` role (SQLite cannot alter a CHECK: the users table is rebuilt, ids kept), and
    review tasks: k curators per node answer keep | eliminate | unsure; applying a task writes
    audited overrides (`review_items.override_id` links each to the override it produced)."""
    conn.executescript(
        """
        CREATE TABLE users_new (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'curator', 'annotator')),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        );
        INSERT INTO users_new (id, username, password_hash, role, disabled, created_at)
            SELECT id, username, password_hash, role, disabled, created_at FROM users;
        DROP TABLE users;
        ALTER TABLE users_new RENAME TO users;

        CREATE TABLE review_tasks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            filters TEXT NOT NULL DEFAULT '{}',  -- JSON of the node filter it was built from
            k INTEGER NOT NULL DEFAULT 2,        -- curators per node
            status TEXT NOT NULL DEFAULT 'open', -- open | applied
            policy TEXT,                          -- majority | unanimous, once applied
            created_by TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            applied_by TEXT,
            applied_at TEXT
        );

        CREATE TABLE review_items (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES review_tasks(id) ON DELETE CASCADE,
            node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
            status_before TEXT NOT NULL,         -- the node's effective status when the task was made
            override_id INTEGER REFERENCES overrides(id),
            UNIQUE (task_id, node_id)
        );

        CREATE TABLE review_assignments (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES review_tasks(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES review_items(id) ON DELETE CASCADE,
            curator TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open', -- open | done | skipped
            verdict TEXT CHECK (verdict IN ('keep', 'eliminate', 'unsure')),
            seconds REAL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            answered_at TEXT,
            UNIQUE (item_id, curator)
        );
        CREATE INDEX review_assignments_t ON review_assignments(task_id, curator, status);
        """
    )


_OVERRIDE_STATUS = """(SELECT CASE o.action WHEN 'restore' THEN (CASE WHEN nodes.round = 0 THEN 'seed' ELSE 'kept' END)
                              ELSE 'eliminated' END
         FROM overrides o WHERE o.node_id = nodes.id AND o.undone_at IS NULL ORDER BY o.id DESC LIMIT 1)"""


_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def m009_scale(conn: sqlite3.Connection) -> None:
    """A 250,000-node forest stays interactive.

    - `override_status`: the status the newest live override sets (NULL: none), kept by triggers
      on `overrides` in the same transaction; the effective status is coalesce(override_status,
      status), a plain column read instead of a lookup per row. The audit log stays the source of
      truth (`Store.check_override_status` recomputes it). An override also stamps the node's
      `updated_at`, so max(updated_at) of a run (index `nodes_run_updated`) is its change stamp.
    - `words` (instruction length, `wl_words`) and `difficulty_answered` (a difficulty answer is
      stored, parsable or not) are written with the node, so statistics never parse text or JSON.
    - `nodes_stats` covers every Data tab query (no read of the large rows); `nodes_run_id` serves
      the keyset paging of exports and the scoring job (run_id = ? AND id > ? ORDER BY id);
      `nodes_search` serves the Lineage filters; `nodes_by_id` the same columns for the ids a text
      search finds (no read of the wide rows).
    - `nodes_fts`: a trigram full-text index of instruction and input (substring search of 3+
      characters, case-insensitive like LIKE), kept in sync by triggers on `nodes`.
    """
    conn.executescript(
        f"""
        ALTER TABLE nodes ADD COLUMN override_status TEXT;
        ALTER TABLE nodes ADD COLUMN words INTEGER;
        ALTER TABLE nodes ADD COLUMN difficulty_answered INTEGER NOT NULL DEFAULT 0;
        UPDATE nodes SET words = wl_words(instruction),
                         difficulty_answered = (json_extract(raw, '$.difficulty_raw') IS NOT NULL);
        UPDATE nodes SET override_status = {_OVERRIDE_STATUS} WHERE id IN (SELECT node_id FROM overrides);

        DROP VIEW nodes_effective;
        CREATE VIEW nodes_effective AS
        SELECT n.*, coalesce(n.override_status, n.status) AS effective_status FROM nodes n;

        CREATE TRIGGER overrides_status_insert AFTER INSERT ON overrides BEGIN
          UPDATE nodes SET override_status = {_OVERRIDE_STATUS}, updated_at = {_NOW} WHERE id = NEW.node_id;
        END;
        CREATE TRIGGER overrides_status_update AFTER UPDATE ON overrides BEGIN
          UPDATE nodes SET override_status = {_OVERRIDE_STATUS}, updated_at = {_NOW}
          WHERE id IN (NEW.node_id, OLD.node_id);
        END;
        CREATE TRIGGER overrides_status_delete AFTER DELETE ON overrides BEGIN
          UPDATE nodes SET override_status = {_OVERRIDE_STATUS}, updated_at = {_NOW} WHERE id = OLD.node_id;
        END;

        CREATE INDEX nodes_run_id ON nodes(run_id, id);
        CREATE INDEX nodes_run_updated ON nodes(run_id, updated_at);
        CREATE INDEX nodes_search ON nodes(run_id, root_id, round, status, override_status, operation, fail_rules,
                                           finish_reason);
        CREATE INDEX nodes_by_id ON nodes(id, run_id, root_id, round, status, override_status, operation,
                                          fail_rules, finish_reason);

        CREATE VIRTUAL TABLE nodes_fts USING fts5(instruction, input, content='nodes', content_rowid='id',
                                                  tokenize='trigram');
        INSERT INTO nodes_fts(nodes_fts) VALUES ('rebuild');
        CREATE TRIGGER nodes_fts_insert AFTER INSERT ON nodes BEGIN
          INSERT INTO nodes_fts(rowid, instruction, input) VALUES (NEW.id, NEW.instruction, NEW.input);
        END;
        CREATE TRIGGER nodes_fts_delete AFTER DELETE ON nodes BEGIN
          INSERT INTO nodes_fts(nodes_fts, rowid, instruction, input)
          VALUES ('delete', OLD.id, OLD.instruction, OLD.input);
        END;
        CREATE TRIGGER nodes_fts_update AFTER UPDATE OF instruction, input ON nodes BEGIN
          INSERT INTO nodes_fts(nodes_fts, rowid, instruction, input)
          VALUES ('delete', OLD.id, OLD.instruction, OLD.input);
          INSERT INTO nodes_fts(rowid, instruction, input) VALUES (NEW.id, NEW.instruction, NEW.input);
        END;
        CREATE INDEX nodes_stats ON nodes(run_id, round, status, override_status, operation, difficulty_answered,
                                          fail_rules, words, difficulty);
        """
    )


def m010_rater_quality(conn: sqlite3.Connection) -> None:
    """Verdicts you can trust: an item's kind (real | attention | gold | repeat; only real items
    count in results), what a gold item's degraded answer is, which item a repeat shows again
    with the sides swapped; raters paused per campaign; identity leaks found before blinding."""
    conn.executescript(
        """
        ALTER TABLE campaign_items ADD COLUMN kind TEXT NOT NULL DEFAULT 'real';
        ALTER TABLE campaign_items ADD COLUMN gold_kind TEXT;     -- truncated | off_topic | other_answer
        ALTER TABLE campaign_items ADD COLUMN repeat_of INTEGER REFERENCES campaign_items(id);
        UPDATE campaign_items SET kind = 'attention' WHERE attention_label IS NOT NULL;

        CREATE TABLE campaign_raters (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active',  -- active | paused
            reason TEXT,
            changed_by TEXT,
            changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            PRIMARY KEY (campaign_id, annotator)
        );

        CREATE TABLE identity_hits (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            output_id INTEGER NOT NULL REFERENCES outputs(id) ON DELETE CASCADE,
            match TEXT NOT NULL,                   -- the words that identify a model or vendor
            context TEXT NOT NULL,                 -- the sentence around them
            status TEXT NOT NULL DEFAULT 'open',   -- open | edited | dropped | kept
            resolved_by TEXT,
            resolved_at TEXT,
            UNIQUE (campaign_id, output_id)
        );
        """
    )


def m011_node_text(conn: sqlite3.Connection) -> None:
    """A narrow copy of what text search reads: `node_text(id, run_id, root_id, instruction, input)`,
    kept by triggers on `nodes` in the same statement. The trigram index `nodes_fts` now takes its
    content from it, and a search too short for the index (1-2 characters) scans it: ~150 MB at
    250,000 nodes instead of the ~2 GB of wide rows (responses, raw LLM text)."""
    conn.executescript(
        """
        CREATE TABLE node_text (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL,
            root_id INTEGER,
            instruction TEXT NOT NULL DEFAULT '',
            input TEXT NOT NULL DEFAULT ''
        );
        INSERT INTO node_text (id, run_id, root_id, instruction, input)
        SELECT id, run_id, root_id, instruction, input FROM nodes;

        DROP TRIGGER nodes_fts_insert;
        DROP TRIGGER nodes_fts_delete;
        DROP TRIGGER nodes_fts_update;
        DROP TABLE nodes_fts;
        CREATE VIRTUAL TABLE nodes_fts USING fts5(instruction, input, content='node_text', content_rowid='id',
                                                  tokenize='trigram');
        INSERT INTO nodes_fts(nodes_fts) VALUES ('rebuild');

        CREATE TRIGGER node_text_insert AFTER INSERT ON nodes BEGIN
          INSERT INTO node_text (id, run_id, root_id, instruction, input)
          VALUES (NEW.id, NEW.run_id, NEW.root_id, NEW.instruction, NEW.input);
          INSERT INTO nodes_fts(rowid, instruction, input) VALUES (NEW.id, NEW.instruction, NEW.input);
        END;
        CREATE TRIGGER node_text_delete AFTER DELETE ON nodes BEGIN
          INSERT INTO nodes_fts(nodes_fts, rowid, instruction, input)
          VALUES ('delete', OLD.id, OLD.instruction, OLD.input);
          DELETE FROM node_text WHERE id = OLD.id;
        END;
        CREATE TRIGGER node_text_update AFTER UPDATE OF instruction, input ON nodes BEGIN
          INSERT INTO nodes_fts(nodes_fts, rowid, instruction, input)
          VALUES ('delete', OLD.id, OLD.instruction, OLD.input);
          UPDATE node_text SET instruction = NEW.instruction, input = NEW.input WHERE id = NEW.id;
          INSERT INTO nodes_fts(rowid, instruction, input) VALUES (NEW.id, NEW.instruction, NEW.input);
        END;
        CREATE TRIGGER node_text_tree AFTER UPDATE OF run_id, root_id ON nodes BEGIN
          UPDATE node_text SET run_id = NEW.run_id, root_id = NEW.root_id WHERE id = NEW.id;
        END;
        """
    )


def m012_failed_calls_index(conn: sqlite3.Connection) -> None:
    """The nodes left retryable by failed calls (`attempts > 0`: few, usually none) in a partial
    index that also holds seeds still without their response: m005's (`status = 'pending' AND
    attempts > 0`) could not serve the Evolve tab's count, which asks for either, so every show (an
    admin's login included) read every wide row of the run: 0.5-0.9 s at 260,000 nodes."""
    conn.executescript(
        """
        DROP INDEX nodes_failed_calls;
        CREATE INDEX nodes_failed_calls ON nodes(run_id, round, id) WHERE attempts > 0;
        """
    )


MIGRATIONS = [m001_core, m002_users, m003_evaluation, m004_job_process, m005_call_outcomes, m006_experiments,
              m007_judgment_scores, m008_curators, m009_scale,
              m010_rater_quality, m011_node_text, m012_failed_calls_index]
