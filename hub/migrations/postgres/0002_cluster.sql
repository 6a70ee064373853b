-- Hub cluster registry: which replicas are alive (a lease judged by the database's clock, so
-- replicas' clocks never have to agree), where their peer ports are, and the routes each holds.
-- Rows of a replica that died without withdrawing stop counting when its lease expires.

CREATE TABLE replicas (
    id         TEXT        PRIMARY KEY,
    peer_addr  TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE replica_routes (
    replica_id   TEXT   NOT NULL REFERENCES replicas (id) ON DELETE CASCADE,
    workspace_id BIGINT NOT NULL,
    service      TEXT   NOT NULL,
    owner_id     BIGINT NOT NULL,
    owner_name   TEXT   NOT NULL,
    spec         TEXT   NOT NULL,
    PRIMARY KEY (replica_id, workspace_id, service, owner_id)
);

CREATE INDEX replica_routes_by_service ON replica_routes (workspace_id, service);
