-- thoth enforcer state, version 1 (SQLite). Times are milliseconds since the epoch.
CREATE TABLE IF NOT EXISTS thoth_holds (
    token TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    expires_at TEXT NOT NULL,
    resolution TEXT,
    approver TEXT,
    resolved_ms BIGINT
);
CREATE INDEX IF NOT EXISTS thoth_holds_open ON thoth_holds (agent, expires_ms) WHERE resolution IS NULL;
CREATE INDEX IF NOT EXISTS thoth_holds_expiry ON thoth_holds (expires_ms);
CREATE TABLE IF NOT EXISTS thoth_soft_denials (
    session_id TEXT NOT NULL,
    decision_key TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, decision_key)
);
CREATE INDEX IF NOT EXISTS thoth_soft_denials_age ON thoth_soft_denials (created_ms);
CREATE TABLE IF NOT EXISTS thoth_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    session_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    tenant TEXT NOT NULL,
    tool TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    code TEXT,
    rule_ids TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS thoth_decisions_age ON thoth_decisions (at_ms);
CREATE TABLE IF NOT EXISTS thoth_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms BIGINT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS thoth_events_age ON thoth_events (received_ms);
