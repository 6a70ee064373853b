-- pconnect hub store, schema version 5: debug sessions outlive the hub process that started them.
-- The viewer token is kept only as its SHA-256. `holder` is the hub process (replica) that holds
-- the session's live state now; `epoch` counts how often it moved, so exchange ids stay unique.

CREATE TABLE debug_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id    INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id        INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    token_hash      BLOB    NOT NULL UNIQUE,
    service         TEXT    NOT NULL,
    kind            TEXT,
    project         TEXT,
    ai              INTEGER NOT NULL,
    started_unix_ms INTEGER NOT NULL,
    holder          TEXT    NOT NULL,
    epoch           INTEGER NOT NULL DEFAULT 0,
    ended_at        INTEGER
);

CREATE INDEX debug_sessions_by_owner ON debug_sessions (owner_id) WHERE ended_at IS NULL;
