-- pconnect hub store, schema version 3: public links (`<subdomain>.<domain>` served by the hub's
-- HTTP ingress to an owner's service) and tombstones of released subdomains, so a name once
-- handed out is never handed out again. Timestamps are unix seconds.

CREATE TABLE links (
    id           INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id     INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    service      TEXT    NOT NULL,
    -- Lowercase DNS label, unique across the hub.
    subdomain    TEXT    NOT NULL UNIQUE,
    persistent   INTEGER NOT NULL DEFAULT 0 CHECK (persistent IN (0, 1)),
    created_at   INTEGER NOT NULL,
    -- NULL for persistent links.
    expires_at   INTEGER,
    revoked_at   INTEGER,
    -- Access policy as JSON, opaque to the store.
    policy       TEXT    NOT NULL,
    requests     INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX links_owner ON links (owner_id);
CREATE INDEX links_owner_service ON links (owner_id, service, persistent);

-- Subdomains of deleted links (owner or workspace removed): creating a link checks both tables.
CREATE TABLE subdomain_tombstones (
    subdomain   TEXT    PRIMARY KEY,
    released_at INTEGER NOT NULL
);

-- Fires for cascading deletes too (removing a member or workspace deletes their links).
CREATE TRIGGER links_tombstone AFTER DELETE ON links
BEGIN
    INSERT OR IGNORE INTO subdomain_tombstones (subdomain, released_at)
    VALUES (OLD.subdomain, CAST(strftime('%s', 'now') AS INTEGER));
END;
