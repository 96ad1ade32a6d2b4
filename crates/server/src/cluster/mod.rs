//! Everything about other replicas.

pub(crate) mod redis;
pub mod replicas;
