//! The runtime half of a session template: what the `docker` and `kubernetes` runtimes need
//! beyond the process runtime's command line (image, ports, resources, home volume, idle time).
//!
//! Every field has a serde default so that templates written before these fields existed, and
//! clients that do not know them, keep working unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CreateTemplate, Template};

impl Template {
    /// The template a create request describes, as stored at `created_at`.
    pub fn new(t: CreateTemplate, created_at: DateTime<Utc>) -> Self {
        Self {
            name: t.name,
            description: t.description,
            command: t.command,
            env: t.env,
            image: t.image,
            ports: t.ports,
            resources: t.resources,
            persistent_home: t.persistent_home,
            idle_timeout_secs: t.idle_timeout_secs,
            allowed_groups: t.allowed_groups,
            created_at,
        }
    }
}

/// The VNC port a session's image listens on when the template does not say.
pub const DEFAULT_VNC_PORT: u16 = 5901;

/// Ports the session's workload listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatePorts {
    /// The VNC (RFB) port inside the container or pod.
    #[serde(default = "default_vnc_port")]
    pub vnc: u16,
}

fn default_vnc_port() -> u16 {
    DEFAULT_VNC_PORT
}

impl Default for TemplatePorts {
    fn default() -> Self {
        Self {
            vnc: DEFAULT_VNC_PORT,
        }
    }
}

impl TemplatePorts {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Limits for one session; absent means "no limit set by StreamSpace".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateResources {
    /// CPU in thousandths of a core (`500` = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
}

impl TemplateResources {
    pub fn is_empty(&self) -> bool {
        self.cpu_millis.is_none() && self.memory_mib.is_none()
    }
}

/// Whether a session gets a volume for its home directory, and what happens to it at stop.
/// The volume always survives hibernation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomePolicy {
    /// No volume: the home directory lives and dies with the container.
    #[default]
    None,
    /// A volume per session, deleted when the session stops.
    Delete,
    /// A volume per session, kept when the session stops (for an operator to back up or
    /// remove).
    Retain,
}

impl HomePolicy {
    pub const ALL: [HomePolicy; 3] = [Self::None, Self::Delete, Self::Retain];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Delete => "delete",
            Self::Retain => "retain",
        }
    }

    /// Whether the session gets a home volume at all.
    pub fn has_volume(self) -> bool {
        self != Self::None
    }

    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

impl std::fmt::Display for HomePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HomePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown home policy {s:?}; expected none, delete or retain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields() -> Result<(), serde_json::Error> {
        let p: TemplatePorts = serde_json::from_str("{}")?;
        assert_eq!(p.vnc, DEFAULT_VNC_PORT);
        let r: TemplateResources = serde_json::from_str("{}")?;
        assert!(r.is_empty());
        assert_eq!(serde_json::to_string(&r)?, "{}");
        let h: HomePolicy = serde_json::from_str("\"retain\"")?;
        assert_eq!(h, HomePolicy::Retain);
        for p in HomePolicy::ALL {
            assert_eq!(p.as_str().parse::<HomePolicy>(), Ok(p));
        }
        assert!("keep".parse::<HomePolicy>().is_err());
        Ok(())
    }
}
