//! Size limits on a template's text and list fields (description, command, environment, allowed
//! groups, catalog category and tags).
//!
//! A template travels to its agent inside every `start_session` command, and the agent protocol
//! carries one message per WebSocket frame of at most [`MAX_MESSAGE_BYTES`]. These maxima are
//! chosen so that the largest template they allow, JSON-escaped inside its command, takes less
//! than half of that frame (a test below builds it and measures), so no template accepted here can
//! take its agent offline. Control characters other than tab, newline and carriage return are
//! refused: nothing needs them, and JSON would escape each into six bytes.
//!
//! [`MAX_MESSAGE_BYTES`]: streamspace_proto::wire::MAX_MESSAGE_BYTES

use streamspace_proto::api::CreateTemplate;

/// Longest description, in bytes.
pub(super) const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most arguments in a command, the program included.
pub(super) const MAX_COMMAND_ARGS: usize = 64;
/// Longest single argument, in bytes.
pub(super) const MAX_ARG_BYTES: usize = 1024;
/// Longest command, all arguments together, in bytes.
pub(super) const MAX_COMMAND_BYTES: usize = 4096;
/// Most environment variables.
pub(super) const MAX_ENV_VARS: usize = 64;
/// Longest environment variable name, in bytes.
pub(super) const MAX_ENV_NAME_BYTES: usize = 128;
/// Longest environment variable value, in bytes.
pub(super) const MAX_ENV_VALUE_BYTES: usize = 1024;
/// Longest environment, all names and values together, in bytes.
pub(super) const MAX_ENV_BYTES: usize = 4096;
/// Most groups in `allowed_groups`.
pub(super) const MAX_ALLOWED_GROUPS: usize = 32;
/// Longest catalog category, in characters.
pub(super) const MAX_CATEGORY_CHARS: usize = 40;
/// Most tags.
pub(super) const MAX_TAGS: usize = 10;
/// Longest tag, in bytes (tags are ASCII).
pub(super) const MAX_TAG_BYTES: usize = 32;

/// A text or list field over its limit; the message names the field and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidLimit {
    #[error("description must be at most {MAX_DESCRIPTION_BYTES} bytes, got {0}")]
    Description(usize),
    #[error("command must have at most {MAX_COMMAND_ARGS} arguments, got {0}")]
    CommandArgs(usize),
    #[error("command[{index}] must be at most {MAX_ARG_BYTES} bytes, got {len}")]
    Arg { index: usize, len: usize },
    #[error("command must be at most {MAX_COMMAND_BYTES} bytes in all, got {0}")]
    CommandBytes(usize),
    #[error("env must have at most {MAX_ENV_VARS} variables, got {0}")]
    EnvVars(usize),
    #[error("env name {0:?} must be at most {MAX_ENV_NAME_BYTES} bytes")]
    EnvName(String),
    #[error("env.{name} must be at most {MAX_ENV_VALUE_BYTES} bytes, got {len}")]
    EnvValue { name: String, len: usize },
    #[error("env must be at most {MAX_ENV_BYTES} bytes in all (names and values), got {0}")]
    EnvBytes(usize),
    #[error("allowed_groups must have at most {MAX_ALLOWED_GROUPS} groups, got {0}")]
    Groups(usize),
    #[error(
        "allowed_groups: {0:?} is not a group name (1-64 characters of a-z 0-9 . _ - @, starting with a letter or digit)"
    )]
    Group(String),
    #[error("{0} must not contain control characters other than tab and newline")]
    Control(String),
    #[error("category must be 1-{MAX_CATEGORY_CHARS} characters on one line, got {0:?}")]
    Category(String),
    #[error("tags must have at most {MAX_TAGS} tags, got {0}")]
    Tags(usize),
    #[error("tags: {0:?} is not a tag (1-{MAX_TAG_BYTES} characters of a-z 0-9 -)")]
    Tag(String),
}

pub(super) fn validate(t: &CreateTemplate) -> Result<(), InvalidLimit> {
    if t.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(InvalidLimit::Description(t.description.len()));
    }
    plain_text("description", &t.description)?;
    validate_command(&t.command)?;
    validate_env(t)?;
    if t.allowed_groups.len() > MAX_ALLOWED_GROUPS {
        return Err(InvalidLimit::Groups(t.allowed_groups.len()));
    }
    if let Some(bad) = t
        .allowed_groups
        .iter()
        .find(|g| !super::users::valid_name(g))
    {
        return Err(InvalidLimit::Group(bad.clone()));
    }
    validate_catalog(t)
}

/// The catalog fields: a category is a short one-line heading, a tag a short lowercase word.
fn validate_catalog(t: &CreateTemplate) -> Result<(), InvalidLimit> {
    if let Some(category) = &t.category {
        let chars = category.chars().count();
        if chars == 0
            || chars > MAX_CATEGORY_CHARS
            || category.trim() != category
            || category.chars().any(char::is_control)
        {
            return Err(InvalidLimit::Category(category.clone()));
        }
    }
    if t.tags.len() > MAX_TAGS {
        return Err(InvalidLimit::Tags(t.tags.len()));
    }
    let tag_ok = |tag: &str| {
        !tag.is_empty()
            && tag.len() <= MAX_TAG_BYTES
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if let Some(bad) = t.tags.iter().find(|tag| !tag_ok(tag)) {
        return Err(InvalidLimit::Tag(bad.clone()));
    }
    Ok(())
}

fn validate_command(command: &[String]) -> Result<(), InvalidLimit> {
    if command.len() > MAX_COMMAND_ARGS {
        return Err(InvalidLimit::CommandArgs(command.len()));
    }
    for (index, arg) in command.iter().enumerate() {
        if arg.len() > MAX_ARG_BYTES {
            return Err(InvalidLimit::Arg {
                index,
                len: arg.len(),
            });
        }
        plain_text(&format!("command[{index}]"), arg)?;
    }
    let total: usize = command.iter().map(String::len).sum();
    if total > MAX_COMMAND_BYTES {
        return Err(InvalidLimit::CommandBytes(total));
    }
    Ok(())
}

/// Counts and lengths of the environment (the names' syntax is checked with the rest of the
/// template).
fn validate_env(t: &CreateTemplate) -> Result<(), InvalidLimit> {
    if t.env.len() > MAX_ENV_VARS {
        return Err(InvalidLimit::EnvVars(t.env.len()));
    }
    for (name, value) in &t.env {
        if name.len() > MAX_ENV_NAME_BYTES {
            return Err(InvalidLimit::EnvName(name.clone()));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(InvalidLimit::EnvValue {
                name: name.clone(),
                len: value.len(),
            });
        }
        plain_text(&format!("env.{name}"), value)?;
    }
    let total: usize = t.env.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_ENV_BYTES {
        return Err(InvalidLimit::EnvBytes(total));
    }
    Ok(())
}

fn plain_text(field: &str, value: &str) -> Result<(), InvalidLimit> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(InvalidLimit::Control(field.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use chrono::Utc;
    use streamspace_proto::api::{
        Action, HomePolicy, Template, TemplateIcon, TemplatePorts, TemplateResources,
    };
    use streamspace_proto::wire::{
        self, CommandMessage, MAX_MESSAGE_BYTES, ServerMessage, StartSessionPayload,
    };
    use uuid::Uuid;

    /// The largest template these limits allow, in the encoding that costs the most: every
    /// character of every free-text field is one JSON escapes into two bytes, and every list has
    /// as many (and so as many separators) as allowed.
    fn largest_template() -> CreateTemplate {
        let quotes = |n: usize| "\"".repeat(n);
        let per_arg = MAX_COMMAND_BYTES / MAX_COMMAND_ARGS;
        let env = (0..MAX_ENV_VARS)
            .map(|i| {
                let name = format!("V{i:03}");
                let value = quotes(MAX_ENV_BYTES / MAX_ENV_VARS - name.len());
                (name, value)
            })
            .collect::<BTreeMap<_, _>>();
        let groups = (0..MAX_ALLOWED_GROUPS)
            .map(|i| format!("{i:02}{}", "g".repeat(62)))
            .collect();
        CreateTemplate {
            name: "a".repeat(63),
            description: quotes(MAX_DESCRIPTION_BYTES),
            command: vec![quotes(per_arg); MAX_COMMAND_ARGS],
            env,
            image: Some("i".repeat(255)),
            ports: TemplatePorts { vnc: 65535 },
            resources: TemplateResources {
                cpu_millis: Some(256_000),
                memory_mib: Some(1 << 20),
            },
            persistent_home: HomePolicy::Retain,
            idle_timeout_secs: Some(30 * 24 * 3600),
            allowed_groups: groups,
            category: Some("\u{1F5A5}".repeat(MAX_CATEGORY_CHARS)),
            tags: (0..MAX_TAGS)
                .map(|i| format!("{i}{}", "t".repeat(MAX_TAG_BYTES - 1)))
                .collect(),
            icon: Some(TemplateIcon::Desktop),
            rules: streamspace_proto::api::SessionRules {
                clipboard: Some(streamspace_proto::api::ClipboardPolicy::FromSession),
                clipboard_max_bytes: Some(u32::MAX),
                file_transfer: Some(streamspace_proto::api::TransferPolicy::Download),
                transfer_max_bytes: Some(u64::MAX),
                recording: Some(streamspace_proto::api::RecordingPolicy::OnRequest),
            },
        }
    }

    #[test]
    fn the_largest_template_fits_a_start_session_command_twice_over()
    -> Result<(), serde_json::Error> {
        let create = largest_template();
        assert_eq!(validate(&create), Ok(()), "the largest template is valid");
        assert_eq!(super::super::template_fields::validate(&create), Ok(()));
        let template = Template::new(create, Utc::now());
        // As `api::sessions::create` builds the payload and the dispatcher the command.
        let payload = serde_json::to_value(StartSessionPayload { template })?;
        let message = ServerMessage::Command(CommandMessage {
            command_id: Uuid::now_v7(),
            action: Action::StartSession,
            session_id: Some(Uuid::now_v7()),
            payload,
            attempt: u32::MAX,
        });
        let size = wire::encode(&message).len();
        assert!(
            size < MAX_MESSAGE_BYTES / 2,
            "the largest start_session command is {size} bytes; the frame limit is {MAX_MESSAGE_BYTES}"
        );
        Ok(())
    }

    fn with(f: impl FnOnce(&mut CreateTemplate)) -> Result<(), String> {
        let mut t = CreateTemplate {
            name: "x".into(),
            command: vec!["xterm".into()],
            ..CreateTemplate::default()
        };
        f(&mut t);
        validate(&t).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_each_field_over_its_limit_naming_field_and_limit() {
        type Change = fn(&mut CreateTemplate);
        let long = |n: usize| "x".repeat(n);
        let cases: [(&str, Change); 17] = [
            ("description must be at most 1024 bytes, got 70000", |t| {
                t.description = "x".repeat(70_000)
            }),
            ("description must not contain control", |t| {
                t.description = "a\u{1b}b".into()
            }),
            ("command must have at most 64 arguments, got 65", |t| {
                t.command = vec!["a".into(); 65]
            }),
            ("command[1] must be at most 1024 bytes, got 1025", |t| {
                t.command.push("x".repeat(1025))
            }),
            ("command must be at most 4096 bytes in all", |t| {
                t.command = vec!["x".repeat(1000); 5]
            }),
            ("command[0] must not contain control", |t| {
                t.command = vec!["a\0".into()]
            }),
            ("env must have at most 64 variables, got 65", |t| {
                t.env = (0..65).map(|i| (format!("V{i}"), String::new())).collect()
            }),
            ("env name \"", |t| {
                t.env.insert("V".repeat(129), String::new());
            }),
            ("env.V must be at most 1024 bytes, got 1025", |t| {
                t.env.insert("V".into(), "x".repeat(1025));
            }),
            ("env must be at most 4096 bytes in all", |t| {
                t.env = (0..5)
                    .map(|i| (format!("V{i}"), "x".repeat(1000)))
                    .collect()
            }),
            ("allowed_groups must have at most 32 groups, got 33", |t| {
                t.allowed_groups = (0..33).map(|i| format!("g{i}")).collect()
            }),
            ("allowed_groups: \"Staff\" is not a group name", |t| {
                t.allowed_groups = vec!["Staff".into()]
            }),
            ("category must be 1-40 characters", |t| {
                t.category = Some(String::new())
            }),
            ("category must be 1-40 characters", |t| {
                t.category = Some("x".repeat(41))
            }),
            ("category must be 1-40 characters", |t| {
                t.category = Some("Office\nSuite".into())
            }),
            ("tags must have at most 10 tags, got 11", |t| {
                t.tags = (0..11).map(|i| format!("t{i}")).collect()
            }),
            ("tags: \"Writer\" is not a tag", |t| {
                t.tags = vec!["Writer".into()]
            }),
        ];
        for (message, change) in cases {
            let err = with(change).expect_err(message);
            assert!(
                err.starts_with(message),
                "expected {message:?}, got {err:?}"
            );
        }
        assert!(with(|t| t.description = long(MAX_DESCRIPTION_BYTES)).is_ok());
        assert!(with(|t| t.description = "line one\n\tline two\r\n".into()).is_ok());
        assert!(with(|t| t.allowed_groups = vec!["staff".into(), "a.b@c".into()]).is_ok());
        assert!(
            with(|t| {
                t.category = Some("Büro & Grafik".into());
                t.tags = vec!["writer".into(), "pdf-2".into()];
                t.icon = Some(TemplateIcon::Office);
            })
            .is_ok()
        );
    }
}
