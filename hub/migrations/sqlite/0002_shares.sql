-- pconnect hub store, schema version 2: environment shares (a snapshot of a member's services
-- behind a short code, stored only as its keyed hash), their routes, the members admitted to them
-- (join tokens stored only as SHA-256), and an index for counting audit entries per member.
-- Timestamps are unix seconds.

CREATE TABLE shares (
    id           INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    creator_id   INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- Keyed hash of the share code; the code itself is never stored.
    code_hash    BLOB    NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    name         TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE INDEX shares_creator ON shares (creator_id);
CREATE INDEX shares_expires ON shares (expires_at);

CREATE TABLE share_routes (
    share_id INTEGER NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    service  TEXT    NOT NULL,
    port     INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    PRIMARY KEY (share_id, position)
);

CREATE TABLE share_joins (
    id         INTEGER PRIMARY KEY,
    share_id   INTEGER NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- SHA-256 of the join token; the token itself is never stored.
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at INTEGER NOT NULL
);

-- Cascading deletes look joins up by their parents.
CREATE INDEX share_joins_share ON share_joins (share_id);
CREATE INDEX share_joins_member ON share_joins (member_id);

-- audit_times: entries of one member, action and workspace since an instant.
CREATE INDEX audit_member_action ON audit (workspace_id, member, action, at);
