-- pconnect hub store, schema version 1: workspaces, members (hashed tokens only), services,
-- the audit log and hub-wide settings. Timestamps are unix seconds.

CREATE TABLE workspaces (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    id           INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    -- SHA-256 of the member's token; the token itself is never stored.
    token_hash   BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    is_admin     INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at   INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE services (
    workspace_id INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    owner_id     INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    port         INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

CREATE INDEX services_owner ON services (owner_id);

CREATE TABLE audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    workspace_id INTEGER,
    member       TEXT,
    action       TEXT    NOT NULL,
    detail       TEXT    NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
