-- Debug sessions outlive the replica that started them. The viewer token is kept only as its
-- SHA-256. `holder` is the replica that holds the session's live state now; `epoch` counts how
-- often it moved, so exchange ids stay unique across moves.

CREATE TABLE debug_sessions (
    id              BIGSERIAL PRIMARY KEY,
    workspace_id    BIGINT  NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id        BIGINT  NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    token_hash      BYTEA   NOT NULL UNIQUE,
    service         TEXT    NOT NULL,
    kind            TEXT,
    project         TEXT,
    ai              BOOLEAN NOT NULL,
    started_unix_ms BIGINT  NOT NULL,
    holder          TEXT    NOT NULL,
    epoch           BIGINT  NOT NULL DEFAULT 0,
    ended_at        BIGINT
);

CREATE INDEX debug_sessions_by_owner ON debug_sessions (owner_id) WHERE ended_at IS NULL;
