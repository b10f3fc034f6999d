// The results-database schema as released, version by version: literal copies of the DDL in
// framework/src/results/results_schema.cpp, so that tests keep building files of old schema versions when
// the store has moved on, and a later edit to the live migration list cannot hide a break (a
// released migration is never edited, so these stay true).
#pragma once

namespace lab_test {

// The schema of labrun's first release (PRAGMA user_version = 1), verbatim.
inline constexpr const char* kResultsSchemaVersion1 = R"sql(
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    uid           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    experiment    TEXT NOT NULL,
    config_hash   TEXT NOT NULL,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    error         TEXT,
    backend       TEXT,
    device        TEXT,
    precision     TEXT,
    seed          INTEGER,
    host          TEXT,
    pid           INTEGER,
    code_revision TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    wall_s        REAL
);
CREATE INDEX runs_by_config_hash ON runs (config_hash, status);
CREATE INDEX runs_by_experiment ON runs (experiment);
CREATE TABLE params (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    time   REAL NOT NULL
);
CREATE INDEX metrics_by_run_name_step ON metrics (run_id, name, step);
CREATE TABLE plugins (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    version TEXT,
    file    TEXT,
    sha256  TEXT
);
CREATE INDEX plugins_by_run ON plugins (run_id);
CREATE TABLE artifacts (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind   TEXT NOT NULL,
    path   TEXT NOT NULL
);
CREATE INDEX artifacts_by_run ON artifacts (run_id);
CREATE TABLE texts (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX texts_by_run_name_step ON texts (run_id, name, step);
-- One row per run with the last logged losses: "the last value" is the row with the highest step,
-- and among rows of the same step (a resumed run may log a step twice) the one written last.
CREATE VIEW run_summary AS
SELECT r.id, r.name, r.experiment, r.status, r.started_at, r.wall_s,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS val_loss,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'train/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS train_loss
FROM runs AS r;
PRAGMA user_version = 1;
)sql";

// Migration 1 -> 2 as released: heartbeat_at, sweep, threads, libraries; sweeps; the views.
inline constexpr const char* kResultsMigration1To2 = R"sql(
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
ALTER TABLE runs ADD COLUMN sweep TEXT;
ALTER TABLE runs ADD COLUMN threads INTEGER;
ALTER TABLE runs ADD COLUMN libraries TEXT;
CREATE INDEX runs_by_sweep ON runs (sweep);
-- One row per sweep (the runs one experiment file expands into); runs.sweep holds its id.
CREATE TABLE sweeps (
    id         TEXT PRIMARY KEY,
    experiment TEXT,
    created_at TEXT,
    size       INTEGER
);
DROP VIEW run_summary;
-- One row per run: status, the parameters ablations usually vary, last and best val/loss.
CREATE VIEW run_summary AS
SELECT r.id, r.name, r.experiment, r.sweep, r.status, r.started_at, r.wall_s, r.seed,
       (SELECT p.value FROM params AS p WHERE p.run_id = r.id AND p.key = 'model.type') AS model,
       (SELECT p.value FROM params AS p WHERE p.run_id = r.id AND p.key = 'attention.type') AS attention,
       (SELECT p.value FROM params AS p WHERE p.run_id = r.id AND p.key = 'optimizer.lr') AS lr,
       (SELECT max(m.step) FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'train/loss') AS steps,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS val_loss,
       (SELECT min(m.value) FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss') AS best_val_loss,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'train/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS train_loss
FROM runs AS r;
-- One row per (run, metric): how many values, the last (and its step), the lowest and highest
-- (and their steps). "Best" depends on the metric (loss: lowest, accuracy: highest).
CREATE VIEW metric_summary AS
SELECT g.run_id, g.name, g.n,
       (SELECT m.step FROM metrics AS m WHERE m.run_id = g.run_id AND m.name = g.name
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS last_step,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = g.run_id AND m.name = g.name
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS last_value,
       g.min_value,
       (SELECT m.step FROM metrics AS m WHERE m.run_id = g.run_id AND m.name = g.name AND m.value = g.min_value
        ORDER BY m.step LIMIT 1) AS min_step,
       g.max_value,
       (SELECT m.step FROM metrics AS m WHERE m.run_id = g.run_id AND m.name = g.name AND m.value = g.max_value
        ORDER BY m.step LIMIT 1) AS max_step
FROM (SELECT run_id, name, count(*) AS n, min(value) AS min_value, max(value) AS max_value
      FROM metrics GROUP BY run_id, name) AS g;
PRAGMA user_version = 2;
)sql";

// Migration 2 -> 3 as released: metric_goals.
inline constexpr const char* kResultsMigration2To3 = R"sql(
CREATE TABLE metric_goals (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    goal   TEXT NOT NULL CHECK (goal IN ('none', 'min', 'max')),
    PRIMARY KEY (run_id, name)
);
PRAGMA user_version = 3;
)sql";

// Migration 3 -> 4 as released: runs.world_size and runs.communicator.
inline constexpr const char* kResultsMigration3To4 = R"sql(
ALTER TABLE runs ADD COLUMN world_size INTEGER;
ALTER TABLE runs ADD COLUMN communicator TEXT;
PRAGMA user_version = 4;
)sql";

}  // namespace lab_test
