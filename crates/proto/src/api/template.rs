//! The runtime half of a session template: what the `docker` and `kubernetes` runtimes need
//! beyond the process runtime's command line (image, ports, resources, home volume, idle time).
//!
//! Every field has a serde default so that templates written before these fields existed, and
//! clients that do not know them, keep working unchanged. [`UpdateTemplate`] is the partial
//! change of `PATCH /api/v1/templates/{name}`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::quota::present;
use super::{CreateTemplate, SessionRules, Template};

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
            category: t.category,
            tags: t.tags,
            icon: t.icon,
            rules: t.rules,
            created_at,
        }
    }
}

/// `PATCH /api/v1/templates/{name}`: a partial change of a template (its name stays). An
/// omitted field stays as it is; `null` resets a field to what a template created without it
/// has (no description, command, environment, image, idle timeout or resources, the default
/// ports, no home volume, and no `allowed_groups`: every user may launch it). `resources`
/// changes field by field in the same way; `ports` is replaced whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub env: Option<Option<BTreeMap<String, String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ports: Option<Option<TemplatePorts>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub resources: Option<Option<ResourcesChange>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub persistent_home: Option<Option<HomePolicy>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_secs: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_groups: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub category: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub icon: Option<Option<TemplateIcon>>,
    /// Replaces the rules whole; `null` clears them.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rules: Option<Option<SessionRules>>,
}

impl UpdateTemplate {
    /// The template `current` becomes, as the create request that would make it (so that it
    /// is checked exactly as a new one is).
    pub fn apply(&self, current: Template) -> CreateTemplate {
        fn pick<T: Clone + Default>(change: &Option<Option<T>>, current: T) -> T {
            match change {
                None => current,
                Some(value) => value.clone().unwrap_or_default(),
            }
        }
        fn pick_opt<T: Clone>(change: &Option<Option<T>>, current: Option<T>) -> Option<T> {
            match change {
                None => current,
                Some(value) => value.clone(),
            }
        }
        CreateTemplate {
            name: current.name,
            description: pick(&self.description, current.description),
            command: pick(&self.command, current.command),
            env: pick(&self.env, current.env),
            image: pick_opt(&self.image, current.image),
            ports: pick(&self.ports, current.ports),
            resources: match &self.resources {
                None => current.resources,
                Some(None) => TemplateResources::default(),
                Some(Some(change)) => TemplateResources {
                    cpu_millis: pick_opt(&change.cpu_millis, current.resources.cpu_millis),
                    memory_mib: pick_opt(&change.memory_mib, current.resources.memory_mib),
                },
            },
            persistent_home: pick(&self.persistent_home, current.persistent_home),
            idle_timeout_secs: pick_opt(&self.idle_timeout_secs, current.idle_timeout_secs),
            allowed_groups: pick(&self.allowed_groups, current.allowed_groups),
            category: pick_opt(&self.category, current.category),
            tags: pick(&self.tags, current.tags),
            icon: pick_opt(&self.icon, current.icon),
            rules: pick(&self.rules, current.rules),
        }
    }

    /// The names of the fields this change sets or resets, in declaration order.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("description", self.description.is_some()),
            ("command", self.command.is_some()),
            ("env", self.env.is_some()),
            ("image", self.image.is_some()),
            ("ports", self.ports.is_some()),
            ("resources", self.resources.is_some()),
            ("persistent_home", self.persistent_home.is_some()),
            ("idle_timeout_secs", self.idle_timeout_secs.is_some()),
            ("allowed_groups", self.allowed_groups.is_some()),
            ("category", self.category.is_some()),
            ("tags", self.tags.is_some()),
            ("icon", self.icon.is_some()),
            ("rules", self.rules.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// The `resources` of an [`UpdateTemplate`]: an omitted field stays, `null` removes the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResourcesChange {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_millis: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_mib: Option<Option<u32>>,
}

/// The VNC port a session's image listens on when the template does not say.
pub const DEFAULT_VNC_PORT: u16 = 5901;

/// Ports the session's workload listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// The picture the catalog shows for a template: one of a fixed set drawn by the web UI (never
/// a URL, so a template cannot make browsers fetch anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TemplateIcon {
    Terminal,
    Desktop,
    Browser,
    Office,
    Code,
    Graphics,
    Media,
    Game,
    Science,
    Tools,
}

impl TemplateIcon {
    pub const ALL: [TemplateIcon; 10] = [
        Self::Terminal,
        Self::Desktop,
        Self::Browser,
        Self::Office,
        Self::Code,
        Self::Graphics,
        Self::Media,
        Self::Game,
        Self::Science,
        Self::Tools,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Desktop => "desktop",
            Self::Browser => "browser",
            Self::Office => "office",
            Self::Code => "code",
            Self::Graphics => "graphics",
            Self::Media => "media",
            Self::Game => "game",
            Self::Science => "science",
            Self::Tools => "tools",
        }
    }
}

impl std::fmt::Display for TemplateIcon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TemplateIcon {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|i| i.as_str()).collect();
                format!("unknown icon {s:?}; expected one of {}", names.join(", "))
            })
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

    fn template() -> Template {
        Template::new(
            CreateTemplate {
                name: "firefox".into(),
                description: "a browser".into(),
                command: vec!["firefox".into()],
                env: BTreeMap::from([("LANG".into(), "C".into())]),
                image: Some("localhost/firefox:1".into()),
                resources: TemplateResources {
                    cpu_millis: Some(500),
                    memory_mib: Some(512),
                },
                idle_timeout_secs: Some(600),
                allowed_groups: vec!["staff".into()],
                ..CreateTemplate::default()
            },
            Utc::now(),
        )
    }

    #[test]
    fn an_update_sets_what_it_names_resets_nulls_and_keeps_the_rest()
    -> Result<(), serde_json::Error> {
        let change: UpdateTemplate = serde_json::from_str(
            r#"{"description": "new", "image": null, "allowed_groups": ["a", "b"],
                "resources": {"cpu_millis": 250}, "idle_timeout_secs": null}"#,
        )?;
        assert_eq!(
            change.fields(),
            [
                "description",
                "image",
                "resources",
                "idle_timeout_secs",
                "allowed_groups"
            ]
        );
        let t = change.apply(template());
        assert_eq!(t.name, "firefox");
        assert_eq!(t.description, "new");
        assert_eq!(t.command, ["firefox"], "kept");
        assert_eq!(t.env.get("LANG").map(String::as_str), Some("C"), "kept");
        assert_eq!(t.image, None, "null clears");
        assert_eq!(t.idle_timeout_secs, None, "null clears");
        assert_eq!(
            t.resources,
            TemplateResources {
                cpu_millis: Some(250),
                memory_mib: Some(512)
            },
            "changed field by field"
        );
        let unlimited: UpdateTemplate =
            serde_json::from_str(r#"{"resources": {"memory_mib": null}}"#)?;
        assert_eq!(
            unlimited.apply(template()).resources,
            TemplateResources {
                cpu_millis: Some(500),
                memory_mib: None
            }
        );
        let none: UpdateTemplate = serde_json::from_str(r#"{"resources": null}"#)?;
        assert!(none.apply(template()).resources.is_empty());
        assert_eq!(t.allowed_groups, ["a", "b"]);

        let reset: UpdateTemplate =
            serde_json::from_str(r#"{"allowed_groups": null, "description": null}"#)?;
        let t = reset.apply(template());
        assert!(t.allowed_groups.is_empty() && t.description.is_empty());
        let (kept, t) = (UpdateTemplate::default().apply(template()), template());
        assert!(
            kept.description == t.description
                && kept.command == t.command
                && kept.env == t.env
                && kept.image == t.image
                && kept.ports == t.ports
                && kept.resources == t.resources
                && kept.persistent_home == t.persistent_home
                && kept.idle_timeout_secs == t.idle_timeout_secs
                && kept.allowed_groups == t.allowed_groups,
            "an empty change keeps everything: {kept:?}"
        );
        // A null is sent as null, an omitted field not at all.
        assert_eq!(
            serde_json::to_string(&reset)?,
            r#"{"description":null,"allowed_groups":null}"#
        );
        assert!(serde_json::from_str::<UpdateTemplate>(r#"{"name": "x"}"#).is_err());
        Ok(())
    }
}
