//! Several replicas sharing their agents through Redis.

pub(crate) mod hub;
pub(crate) mod link;
pub(crate) mod routing;
