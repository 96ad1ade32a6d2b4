//! SQL shared by both backends.
//!
//! sqlx binds `$1…$N` on SQLite too, so most statements are written once. Two things differ:
//! how each backend reads its clock (PostgreSQL `clock_timestamp()`; SQLite millisecond TEXT,
//! see the SQLite migrations) and the guarded status lists, which are built from proto's state
//! machines ([`CommandStatus::predecessors`], [`SessionState::predecessors`]) so the database
//! enforces exactly the transitions the rest of the system assumes. Those statements are built
//! once per backend into [`Statements`].

use std::sync::LazyLock;

use streamspace_proto::api::{CommandStatus, SessionState};

use crate::StoreError;

macro_rules! command_columns {
    () => {
        "id, command_id, agent_id, session_id, action, payload, status, result, error_message, \
         attempts, created_at, sent_at, acknowledged_at, completed_at, updated_at"
    };
}

macro_rules! session_columns {
    () => {
        "id, template, agent_id, state, vnc_address, error_message, owner, owner_id, created_at, \
         updated_at"
    };
}

macro_rules! active_sessions {
    () => {
        "(SELECT COUNT(*) FROM sessions s \
          WHERE s.agent_id = a.agent_id AND s.state NOT IN ('terminated', 'failed'))"
    };
}

macro_rules! agent_columns {
    () => {
        concat!(
            "a.agent_id, a.platform, a.status, a.labels, a.max_sessions, ",
            active_sessions!(),
            " AS active_sessions, a.epoch, a.replica_id, a.version, a.last_heartbeat_at, \
             a.created_at, a.updated_at"
        )
    };
}

macro_rules! template_columns {
    () => {
        "name, description, command, env, image, vnc_port, cpu_millis, memory_mib, \
         persistent_home, idle_timeout_secs, allowed_groups, category, tags, icon, rules, created_at"
    };
}

macro_rules! key_columns {
    () => {
        "id, kind, agent_id, user_id, name, prefix, created_at, last_used_at, expires_at, \
         revoked_at"
    };
}

pub(crate) use command_columns;
pub(crate) use key_columns;
pub(crate) use session_columns;

pub(crate) const SETTING_INSERT: &str =
    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
pub(crate) const SETTING_GET: &str = "SELECT value FROM settings WHERE key = $1";

pub(crate) const KEY_GET: &str = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
pub(crate) const KEY_LIST: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE kind = $1 ORDER BY created_at, id"
);
pub(crate) const KEY_REHASH: &str =
    "UPDATE api_keys SET key_hash = $3 WHERE id = $1 AND key_hash = $2";
pub(crate) const HAS_ADMIN_KEY: &str =
    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE kind = 'admin' AND revoked_at IS NULL)";

pub(crate) const TEMPLATE_INSERT: &str = concat!(
    "INSERT INTO templates (name, description, command, env, image, vnc_port, cpu_millis, \
     memory_mib, persistent_home, idle_timeout_secs, allowed_groups, category, tags, icon, rules) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING ",
    template_columns!()
);
pub(crate) const TEMPLATE_GET: &str = concat!(
    "SELECT ",
    template_columns!(),
    " FROM templates WHERE name = $1"
);
pub(crate) const TEMPLATE_LIST: &str = concat!(
    "SELECT ",
    template_columns!(),
    " FROM templates ORDER BY name"
);
pub(crate) const TEMPLATE_DELETE: &str = "DELETE FROM templates WHERE name = $1";
/// Every field but the name, as [`TEMPLATE_INSERT`] binds them ($1 the name).
pub(crate) const TEMPLATE_UPDATE: &str = "UPDATE templates SET description = $2, command = $3, \
     env = $4, image = $5, vnc_port = $6, cpu_millis = $7, memory_mib = $8, persistent_home = $9, \
     idle_timeout_secs = $10, allowed_groups = $11, category = $12, tags = $13, icon = $14, \
     rules = $15 WHERE name = $1";

pub(crate) const AGENT_GET: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents a WHERE a.agent_id = $1"
);
pub(crate) const AGENT_LIST: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents a WHERE ($1 IS NULL OR a.agent_id > $1) ORDER BY a.agent_id LIMIT $2"
);
/// Least-loaded online agent (of platform `$1`, when not null) with a free session slot.
pub(crate) const AGENT_CHOOSE: &str = concat!(
    "SELECT agent_id FROM (SELECT a.agent_id, a.max_sessions, ",
    active_sessions!(),
    " AS active FROM agents a WHERE a.status = 'online' AND ($1 IS NULL OR a.platform = $1) \
     AND ($2 IS NULL OR a.agent_id = $2) AND (NOT $3 OR a.user_homes)) c \
     WHERE active < max_sessions ORDER BY active, agent_id LIMIT 1"
);
/// Whether agent `$1` is still online with a free slot (re-checked after locking it).
pub(crate) const AGENT_HAS_ROOM: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = $1 AND a.status = 'online' AND ",
    active_sessions!(),
    " < a.max_sessions)"
);
pub(crate) const AGENT_ACTIVE_SESSIONS: &str = "SELECT COUNT(*) FROM sessions \
     WHERE agent_id = $1 AND state NOT IN ('terminated', 'failed')";
pub(crate) const AGENT_DELETE: &str = "DELETE FROM agents WHERE agent_id = $1";

pub(crate) const SESSION_INSERT: &str = concat!(
    "INSERT INTO sessions (id, template, agent_id, owner, owner_id, user_home, rules) \
     VALUES ($1, $2, $3, $4, $5, $6, COALESCE((SELECT rules FROM templates WHERE name = $2), \
     '{}')) RETURNING ",
    session_columns!()
);
pub(crate) const SESSION_GET: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE id = $1"
);
pub(crate) const SESSION_LIST: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR agent_id = $2) \
     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
);

pub(crate) const COMMAND_INSERT: &str = concat!(
    "INSERT INTO agent_commands (command_id, agent_id, session_id, action, payload) \
     VALUES ($1, $2, $3, $4, $5) RETURNING ",
    command_columns!()
);
/// Gives back the claim of a command claimed in its insert that never reached its agent.
pub(crate) const COMMAND_UNCLAIM: &str = "UPDATE agent_commands SET status = 'pending', \
     attempts = 0, sent_at = NULL WHERE command_id = $1 AND status = 'sent' AND attempts = 1";
pub(crate) const COMMAND_GET: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM agent_commands WHERE command_id = $1"
);
pub(crate) const COMMAND_BY_ID: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM agent_commands WHERE id = $1"
);
pub(crate) const COMMAND_LIST: &str = concat!(
    "SELECT ",
    command_columns!(),
    " FROM agent_commands WHERE ($1 IS NULL OR session_id = $1) \
     AND ($2 IS NULL OR agent_id = $2) AND ($3 IS NULL OR status = $3) \
     AND ($5 IS NULL OR session_id IN (SELECT id FROM sessions WHERE owner_id = $5)) \
     AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $4"
);

pub(crate) const SESSION_LIST_LIVE: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE agent_id = $1 AND state NOT IN ('terminated', 'failed') \
     ORDER BY created_at DESC, id DESC"
);

pub(crate) const AUDIT_INSERT: &str = "INSERT INTO audit_log \
     (actor, action, target, detail, actor_id, client_addr) VALUES ($1, $2, $3, $4, $5, $6)";

/// How one backend reads the database clock.
pub(crate) struct Dialect {
    /// The current time, in the form the backend stores timestamps.
    now: &'static str,
    /// A time no later than any `now` of the same statement and no earlier than anything
    /// committed before the transaction began (PostgreSQL: the transaction's start; SQLite:
    /// `now`, which is fixed for the whole statement).
    tx_now: &'static str,
    /// The time `secs` (an SQL expression, in seconds) before now, comparable with stored ones.
    ago: fn(&str) -> String,
    /// The time `secs` after now; NULL when `secs` is NULL.
    later: fn(&str) -> String,
    /// A timestamp parameter, bound as text in [`Statements::time_format`].
    time_param: fn(&str) -> String,
    time_format: &'static str,
    /// Row lock for a read that a write in the same transaction depends on. SQLite needs none:
    /// its write transactions are `BEGIN IMMEDIATE`, so writers never interleave.
    lock: &'static str,
    /// Like `lock`, for work any replica may do: rows another replica holds are skipped.
    lock_skip: &'static str,
    /// A lock for work only one replica should do at a time, tried at the start of a
    /// transaction and released at its end; answers whether it was taken.
    try_exclusive: Option<&'static str>,
}

fn pg_ago(secs: &str) -> String {
    format!("(clock_timestamp() - make_interval(secs => {secs}))")
}

fn pg_later(secs: &str) -> String {
    format!("(clock_timestamp() + make_interval(secs => {secs}))")
}

fn sqlite_later(secs: &str) -> String {
    format!(
        "CASE WHEN {secs} IS NULL THEN NULL ELSE \
         strftime('%Y-%m-%d %H:%M:%f', 'now', printf('+%.3f seconds', {secs})) END"
    )
}

fn sqlite_ago(secs: &str) -> String {
    format!("strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%.3f seconds', {secs}))")
}

/// `clock_timestamp()` rather than `now()`: a row changed later in a transaction (or after
/// waiting for a lock) never gets an older time than one changed before it.
pub(crate) const PG: Dialect = Dialect {
    now: "clock_timestamp()",
    tx_now: "now()",
    ago: pg_ago,
    later: pg_later,
    time_param: |p| format!("CAST({p} AS TIMESTAMPTZ)"),
    time_format: "%Y-%m-%dT%H:%M:%S%.3fZ",
    lock: " FOR UPDATE",
    lock_skip: " FOR UPDATE SKIP LOCKED",
    try_exclusive: Some(PG_PURGE_LOCK),
};

/// The advisory lock purges take on PostgreSQL: a key ("SSPURGE1" in ASCII) that other users
/// of the database are unlikely to pick; migrations use another.
const PG_PURGE_LOCK: &str = "SELECT pg_try_advisory_xact_lock(6004231055597847857)";

pub(crate) const SQLITE: Dialect = Dialect {
    now: "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    tx_now: "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    ago: sqlite_ago,
    later: sqlite_later,
    time_param: |p| p.to_owned(),
    time_format: "%Y-%m-%d %H:%M:%S%.3f",
    lock: "",
    lock_skip: "",
    try_exclusive: None,
};

/// `'a', 'b'` for a guarded `IN (…)`; `NULL` (matching nothing) when empty.
fn in_list<T>(items: impl IntoIterator<Item = T>, name: impl Fn(T) -> &'static str) -> String {
    let list: Vec<String> = items
        .into_iter()
        .map(|s| format!("'{}'", name(s)))
        .collect();
    if list.is_empty() {
        "NULL".to_owned()
    } else {
        list.join(", ")
    }
}

pub(crate) fn command_from(next: CommandStatus) -> String {
    in_list(CommandStatus::predecessors(next), CommandStatus::as_str)
}

/// Built once per process; the strings live as long as the process.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Statements that depend on the backend's clock or on the state machines.
pub(crate) struct Statements {
    /// How timestamps are bound as parameters (see `Dialect::time_param`).
    pub time_format: &'static str,
    pub audit_list: &'static str,
    pub key_insert: &'static str,
    pub key_find: &'static str,
    /// One row if the key `$1` (its id) is neither revoked nor expired.
    pub key_valid: &'static str,
    pub key_revoked: &'static str,
    pub token_list: &'static str,
    pub admins_lock: &'static str,
    pub user_lock: &'static str,
    pub user_lock_id: &'static str,
    pub user_login: &'static str,
    pub recovery_use: &'static str,
    pub oidc_flow_purge: &'static str,
    pub oidc_flow_take: &'static str,
    pub oidc_user_lock: &'static str,
    pub key_touch: &'static str,
    pub key_revoke: &'static str,
    pub keys_revoke_agent: &'static str,
    pub agent_register: &'static str,
    pub agent_heartbeat: &'static str,
    pub agent_disconnected: &'static str,
    pub agent_expire: &'static str,
    pub command_claim: &'static str,
    /// [`COMMAND_INSERT`] for a command to be sent at once (see `NewCommand::send_now`).
    pub command_insert_sent: &'static str,
    pub command_claim_due: &'static str,
    pub command_finish_sessionless: &'static str,
    pub command_ack: &'static str,
    pub command_finish: &'static str,
    pub command_fail: &'static str,
    pub deliverable: &'static str,
    pub agents_with_deliverable: &'static str,
    pub stuck: &'static str,
    pub session_lock: &'static str,
    pub agent_lock: &'static str,
    /// Taken before a purge; `None` where one writer is all there is (SQLite).
    pub purge_lock: Option<&'static str>,
    /// Purges of commands, sessions and audit entries: `$1` age in seconds, `$2` batch size.
    pub purge_commands: &'static str,
    pub purge_sessions: &'static str,
    pub purge_audit: &'static str,
    pub recording_finish: &'static str,
    pub recording_expired: &'static str,
    pub template_lock: &'static str,
    pub share_insert: &'static str,
    pub share_revoke: &'static str,
    pub sample_insert: &'static str,
    session_move: [&'static str; SessionState::ALL.len()],
}

/// When a `sent` command's backoff has passed: its last send is older than
/// `ack · 2^(attempts-1)` seconds (`ack` an SQL expression).
fn command_backoff(d: &Dialect, ack: &str) -> String {
    (d.ago)(&format!("{ack} * (1 << (attempts - 1))"))
}

/// Whether a `sent` command may be sent again: it has attempts left (`max`) and its backoff
/// has passed. Unqualified columns of `agent_commands`.
pub(crate) fn command_retry_due(d: &Dialect, ack: &str, max: &str) -> String {
    format!(
        "(status = 'sent' AND attempts < {max} AND sent_at < {})",
        command_backoff(d, ack)
    )
}

/// The `status, attempts, created_at, sent_at` of a command inserted claimed if `s.now_sent`
/// (else pending), created — and sent — at `s.at`: the tail of both claiming inserts.
pub(crate) const CLAIMING_INSERT_VALUES: &str = "CASE WHEN s.now_sent THEN 'sent' ELSE 'pending' END, \
     CASE WHEN s.now_sent THEN 1 ELSE 0 END, s.at, CASE WHEN s.now_sent THEN s.at END";

/// True when `agent` has no command a claim would take now (see [`command_claim_due_ids`]):
/// none pending and none sent and due again (`ack`, `max` as in [`command_retry_due`]). Two
/// plain scans of `agent_commands_claim_idx`, as the claim's candidates.
pub(crate) fn command_none_due(d: &Dialect, agent: &str, ack: &str, max: &str) -> String {
    format!(
        "(NOT EXISTS (SELECT 1 FROM agent_commands WHERE agent_id = {agent} \
         AND status = 'pending') AND NOT EXISTS (SELECT 1 FROM agent_commands \
         WHERE agent_id = {agent} AND {}))",
        command_retry_due(d, ack, max)
    )
}

/// Selects (and on PostgreSQL locks, skipping rows another transaction holds) the ids of at
/// most `limit` due commands of `agent`, oldest first: pending ones and sent ones whose
/// backoff has passed (`ack`, `max` as in [`command_retry_due`]).
///
/// The candidates come from two plain scans of `agent_commands_claim_idx` in id order, which
/// mark the entries of finished commands dead as they meet them; a bitmap scan (what the
/// planner picks for one `status = 'pending' OR …` condition) never does, and visits every
/// entry a finished command left behind again on every claim until vacuum. The locked rows are
/// checked again, as a row may have moved on since it was read; the check is a `CASE` so that
/// the planner reaches the rows through the candidates rather than through an index of its
/// own choosing.
pub(crate) fn command_claim_due_ids(
    d: &Dialect,
    agent: &str,
    ack: &str,
    max: &str,
    limit: &str,
) -> String {
    let retry_due = command_retry_due(d, ack, max);
    format!(
        "SELECT id FROM agent_commands WHERE id IN (SELECT due.id FROM \
         (SELECT id FROM agent_commands WHERE agent_id = {agent} AND status = 'pending' \
         UNION ALL SELECT id FROM agent_commands WHERE agent_id = {agent} AND {retry_due}) \
         AS due ORDER BY due.id LIMIT {limit}) \
         AND CASE WHEN status = 'pending' THEN TRUE ELSE {retry_due} END ORDER BY id{}",
        d.lock_skip
    )
}

impl Statements {
    fn new(d: &Dialect) -> Self {
        let now = d.now;
        let ago = d.ago;
        // A result implies the agent had the command: an ack the server never wrote (it came
        // with the result, see the agent connection) is dated by the result, never after it.
        let implied_ack = format!("acknowledged_at = COALESCE(acknowledged_at, {})", d.tx_now);
        let (lock, lock_skip) = (d.lock, d.lock_skip);
        let backoff = |ack: &str| command_backoff(d, ack);
        let retry_due = |ack: &str, max: &str| command_retry_due(d, ack, max);
        let unexpired = format!("(expires_at IS NULL OR expires_at > {now})");
        let (since, until) = ((d.time_param)("$4"), (d.time_param)("$5"));
        Self {
            time_format: d.time_format,
            audit_list: leak(format!(
                "SELECT id, at, actor, actor_id, action, target, detail, client_addr \
                 FROM audit_log WHERE ($1 IS NULL OR actor_id = $1) \
                 AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR target = $3) \
                 AND ($4 IS NULL OR at >= {since}) AND ($5 IS NULL OR at < {until}) \
                 AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
            )),
            key_insert: leak(format!(
                "INSERT INTO api_keys (id, kind, agent_id, user_id, name, prefix, key_hash, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, {}) RETURNING {}",
                (d.later)("$8"),
                key_columns!()
            )),
            key_find: leak(format!(
                "SELECT {} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL AND {unexpired}",
                key_columns!()
            )),
            key_valid: leak(format!(
                "SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL AND {unexpired}"
            )),
            key_revoked: leak(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1 \
                 AND revoked_at IS NOT NULL)"
                    .to_owned(),
            ),
            token_list: leak(format!(
                "SELECT k.id, k.name, u.username, k.prefix, k.created_at, k.last_used_at, \
                 k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE k.kind IN ('admin', 'user') AND k.revoked_at IS NULL \
                 AND (k.expires_at IS NULL OR k.expires_at > {now}) \
                 AND ($1 IS NULL OR k.user_id = $1) ORDER BY k.created_at, k.id"
            )),
            admins_lock: leak(format!(
                "SELECT id FROM users WHERE role = 'admin' AND NOT disabled{lock}"
            )),
            user_lock: leak(format!("{}{lock}", crate::identity::sql::USER_GET)),
            // NO KEY UPDATE: quota checks of one user queue on it, but inserting a session
            // (whose foreign key takes KEY SHARE on the owner) is not blocked by it.
            user_lock_id: leak(format!(
                "SELECT id FROM users WHERE id = $1{}",
                lock.replace("FOR UPDATE", "FOR NO KEY UPDATE")
            )),
            user_login: leak(format!(
                "UPDATE users SET last_login_at = {now} WHERE id = $1"
            )),
            oidc_flow_purge: leak(format!(
                "DELETE FROM oidc_flows WHERE created_at <= {}",
                ago("$1")
            )),
            oidc_flow_take: leak(format!(
                "DELETE FROM oidc_flows WHERE state = $1 RETURNING state, provider, nonce, \
                 pkce_verifier, return_to, created_at <= {} AS expired",
                ago("$2")
            )),
            oidc_user_lock: leak(format!("{}{lock}", crate::sso::sql::USER_BY_SUBJECT)),
            recovery_use: leak(format!(
                "UPDATE recovery_codes SET used_at = {now} \
                 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"
            )),
            key_touch: leak(format!(
                "UPDATE api_keys SET last_used_at = {now} WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < {}) RETURNING last_used_at",
                ago("$2")
            )),
            share_insert: leak(format!(
                "INSERT INTO session_shares (id, session_id, created_by, mode, allowed_users, \
                 allowed_groups, expires_at) VALUES ($1, $2, $3, $4, $5, $6, {})",
                (d.later)("$7")
            )),
            share_revoke: leak(format!(
                "UPDATE session_shares SET revoked_at = COALESCE(revoked_at, {now}) WHERE id = $1"
            )),
            key_revoke: leak(format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, {now}) WHERE id = $1"
            )),
            keys_revoke_agent: leak(format!(
                "UPDATE api_keys SET revoked_at = {now} WHERE agent_id = $1 AND revoked_at IS NULL"
            )),
            agent_register: leak(format!(
                "INSERT INTO agents (agent_id, platform, version, max_sessions, labels, replica_id, \
                 status, epoch, last_heartbeat_at, user_homes) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'online', 1, {now}, $7) \
                 ON CONFLICT (agent_id) DO UPDATE SET platform = excluded.platform, \
                 version = excluded.version, max_sessions = excluded.max_sessions, \
                 labels = excluded.labels, replica_id = excluded.replica_id, status = 'online', \
                 user_homes = excluded.user_homes, \
                 epoch = agents.epoch + 1, last_heartbeat_at = excluded.last_heartbeat_at \
                 RETURNING epoch"
            )),
            agent_heartbeat: leak(format!(
                "UPDATE agents SET last_heartbeat_at = {now}, max_sessions = $3, status = 'online', \
                 replica_id = $4 WHERE agent_id = $1 AND epoch = $2"
            )),
            agent_disconnected: leak(
                "UPDATE agents SET status = 'offline', replica_id = NULL \
                 WHERE agent_id = $1 AND epoch = $2"
                    .to_owned(),
            ),
            // Rows a heartbeat or a registration holds are skipped (that agent is alive): the
            // sweep never waits on their batches, so it cannot deadlock with them.
            agent_expire: leak(format!(
                "UPDATE agents SET status = 'offline', replica_id = NULL WHERE agent_id IN \
                 (SELECT agent_id FROM agents WHERE status = 'online' \
                 AND (last_heartbeat_at IS NULL OR last_heartbeat_at < {}){}) RETURNING agent_id",
                ago("$1"),
                d.lock_skip
            )),
            command_claim: leak(format!(
                "UPDATE agent_commands SET status = 'sent', attempts = attempts + 1, \
                 sent_at = {now} WHERE command_id = $1 AND attempts = $2 AND status IN ({})",
                command_from(CommandStatus::Sent)
            )),
            // The same columns as `COMMAND_INSERT`, claimed in the insert unless the agent has
            // a command the dispatcher would claim now ($6 ack timeout, $7 most attempts, as
            // in `command_claim_due_ids`); created and sent at the same instant.
            command_insert_sent: leak(format!(
                "INSERT INTO agent_commands (command_id, agent_id, session_id, action, payload, \
                 status, attempts, created_at, sent_at) SELECT $1, $2, $3, $4, $5, {} \
                 FROM (SELECT {now} AS at, {} AS now_sent) AS s RETURNING {}",
                CLAIMING_INSERT_VALUES,
                command_none_due(d, "$2", "$6", "$7"),
                command_columns!()
            )),
            // Claims every due command of agent $1 at once ($2 ack timeout, $3 max attempts,
            // $4 limit); rows another dispatcher holds are left to it. See
            // `command_claim_due_ids`.
            command_claim_due: leak(format!(
                "UPDATE agent_commands SET status = 'sent', attempts = attempts + 1, \
                 sent_at = {now} WHERE id IN ({}) RETURNING {}",
                command_claim_due_ids(d, "$1", "$2", "$3", "$4"),
                command_columns!()
            )),
            command_finish_sessionless: leak(format!(
                "UPDATE agent_commands SET status = $3, result = $4, error_message = $5, \
                 {implied_ack}, completed_at = {now} WHERE command_id = $1 AND agent_id = $2 \
                 AND session_id IS NULL AND status IN ({}) RETURNING {}",
                command_from(CommandStatus::Completed),
                command_columns!()
            )),
            command_ack: leak(format!(
                "UPDATE agent_commands SET status = 'acknowledged', acknowledged_at = {now} \
                 WHERE command_id = $1 AND agent_id = $2 AND status IN ({})",
                command_from(CommandStatus::Acknowledged)
            )),
            // Completed and Failed have the same predecessors.
            command_finish: leak(format!(
                "UPDATE agent_commands SET status = $3, result = $4, error_message = $5, \
                 {implied_ack}, completed_at = {now} WHERE command_id = $1 AND agent_id = $2 \
                 AND status IN ({})",
                command_from(CommandStatus::Completed)
            )),
            command_fail: leak(format!(
                "UPDATE agent_commands SET status = 'failed', error_message = $2, \
                 completed_at = {now} WHERE id = $1 AND status IN ({})",
                command_from(CommandStatus::Failed)
            )),
            deliverable: leak(format!(
                "SELECT {} FROM agent_commands WHERE agent_id = $1 AND (status = 'pending' \
                 OR {} OR ($4 AND status IN ('sent', 'acknowledged'))) \
                 ORDER BY id LIMIT $5",
                command_columns!(),
                retry_due("$2", "$3"),
            )),
            agents_with_deliverable: leak(format!(
                "SELECT DISTINCT agent_id FROM agent_commands \
                 WHERE status = 'pending' OR {} ORDER BY agent_id",
                retry_due("$1", "$2")
            )),
            // $1 stuck_secs, $2 ack_timeout_secs, $3 max_attempts, $4 pending_secs.
            stuck: leak(format!(
                "SELECT id, CASE \
                   WHEN status = 'pending' THEN 'not delivered within ' || $4 || ' s' \
                   WHEN status = 'sent' AND attempts >= $3 AND sent_at < {backoff} \
                     THEN 'not acknowledged after ' || attempts || ' attempts' \
                   ELSE 'no progress for ' || $1 || ' s' END AS reason \
                 FROM agent_commands \
                 WHERE (status IN ('sent', 'acknowledged') AND updated_at < {stuck}) \
                    OR (status = 'sent' AND attempts >= $3 AND sent_at < {backoff}) \
                    OR (status = 'pending' AND created_at < {pending}) \
                 ORDER BY id{lock_skip}",
                stuck = ago("$1"),
                pending = ago("$4"),
                backoff = backoff("$2"),
            )),
            session_lock: leak(format!("{SESSION_GET}{lock}")),
            template_lock: leak(format!("{TEMPLATE_GET}{lock}")),
            agent_lock: leak(format!(
                "SELECT agent_id FROM agents WHERE agent_id = $1{lock}"
            )),
            purge_lock: d.try_exclusive,
            // Each takes the oldest rows first, through the indexes on creation times; a row
            // ended after the cutoff waits for a later purge.
            purge_commands: leak(format!(
                "DELETE FROM agent_commands WHERE id IN (SELECT id FROM agent_commands \
                 WHERE status IN ('completed', 'failed') AND created_at < {ago1} \
                 AND completed_at < {ago1} ORDER BY status, created_at LIMIT $2)",
                ago1 = ago("$1")
            )),
            purge_sessions: leak(format!(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE state IN ('terminated', 'failed') AND created_at < {ago1} \
                 AND updated_at < {ago1} ORDER BY created_at LIMIT $2)",
                ago1 = ago("$1")
            )),
            purge_audit: leak(format!(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                 WHERE at < {} ORDER BY at LIMIT $2)",
                ago("$1")
            )),
            sample_insert: leak(crate::stats::sample_insert(
                &(d.time_param)("$2"),
                &(d.time_param)("$3"),
            )),
            recording_finish: leak(format!(
                "UPDATE recordings SET ended_at = {now}, bytes = $2, complete = $3 WHERE id = $1"
            )),
            recording_expired: leak(format!(
                "SELECT {} FROM recordings WHERE COALESCE(ended_at, started_at) < {} \
                 ORDER BY COALESCE(ended_at, started_at) LIMIT $2",
                crate::recording::sql::recording_columns!(),
                ago("$1")
            )),
            session_move: SessionState::ALL.map(|next| {
                leak(format!(
                    "UPDATE sessions SET state = $2, vnc_address = COALESCE($3, vnc_address), \
                     error_message = COALESCE($4, error_message) \
                     WHERE id = $1 AND state IN ({})",
                    in_list(SessionState::predecessors(next), SessionState::as_str)
                ))
            }),
        }
    }

    /// Guarded `UPDATE` moving session `$1` to `next` (`$2`), setting `$3` vnc_address and
    /// `$4` error_message when not null.
    pub fn session_move(&self, next: SessionState) -> &'static str {
        let index = SessionState::ALL
            .iter()
            .position(|s| *s == next)
            .expect("ALL lists every state");
        self.session_move[index]
    }
}

pub(crate) static PG_STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements::new(&PG));
pub(crate) static SQLITE_STATEMENTS: LazyLock<Statements> =
    LazyLock::new(|| Statements::new(&SQLITE));

/// Maps a unique violation to `Conflict(message)`, anything else to a database error.
pub(crate) fn conflict_on_unique(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(e),
    }
}

/// `limit` of a command listing: default 100, at most 1000.
/// The API pages at most 1000 commands and reads one more to know whether another page follows.
pub(crate) fn command_limit(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(100).clamp(1, 1001))
}
