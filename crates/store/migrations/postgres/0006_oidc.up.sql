-- OpenID Connect sign-in.
--
-- A sign-in through a provider spans two requests (the redirect to the provider and its
-- callback) that may land on different replicas, so what the callback must check — the
-- provider, the nonce, the PKCE verifier and where to go afterwards — is kept here, keyed by
-- the flow's `state`. A row is taken (deleted) by the first callback that names it, so a
-- state works once; rows older than the flow's lifetime are refused and purged.
--
-- Users who signed in through a provider are found by `users (oidc_issuer, oidc_subject)`,
-- unique since 0004; their memberships that a provider manages are `group_members.source =
-- 'oidc'` (also since 0004).
CREATE TABLE oidc_flows (
    state         TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX oidc_flows_created_idx ON oidc_flows (created_at);
