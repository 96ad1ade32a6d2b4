-- OpenID Connect sign-in flows in progress (see the PostgreSQL migration of the same number
-- for the reasons): taken once by the callback, refused and purged once too old.
CREATE TABLE oidc_flows (
    state         TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX oidc_flows_created_idx ON oidc_flows (created_at);
