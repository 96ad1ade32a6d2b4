//! Validation of a template's runtime fields (image, ports, resources, idle timeout): bounds an
//! operator would never exceed on purpose, so a typo is refused at creation with a message that
//! names the field, rather than failing every session started from the template.

use streamspace_proto::api::CreateTemplate;

/// Most CPU a template may ask for: 256 cores.
const MAX_CPU_MILLIS: u32 = 256_000;
/// Least and most memory a template may ask for: 16 MiB (less cannot run a desktop) to 1 TiB.
const MIN_MEMORY_MIB: u32 = 16;
const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Longest idle timeout: 30 days.
const MAX_IDLE_TIMEOUT_SECS: u32 = 30 * 24 * 3600;
/// Longest image reference Docker accepts.
const MAX_IMAGE_LEN: usize = 255;

/// A runtime field out of its bounds; the message names the field, as API clients see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidField {
    #[error("ports.vnc must be a port number between 1 and 65535")]
    VncPort,
    #[error(
        "resources.cpu_millis must be between 1 and {max} (thousandths of a core), got {0}",
        max = MAX_CPU_MILLIS
    )]
    CpuMillis(u32),
    #[error(
        "resources.memory_mib must be between {min} and {max}, got {0}",
        min = MIN_MEMORY_MIB,
        max = MAX_MEMORY_MIB
    )]
    MemoryMib(u32),
    #[error("idle_timeout_secs must be between 1 and {max}, got {0}", max = MAX_IDLE_TIMEOUT_SECS)]
    IdleTimeout(u32),
    #[error("image must be 1-{max} characters, got {0}", max = MAX_IMAGE_LEN)]
    ImageLength(usize),
    #[error("image {image:?} contains {bad:?}; expected a reference like registry/name:tag")]
    ImageCharacter { image: String, bad: char },
    #[error("image {0:?} must start with a letter or digit")]
    ImageStart(String),
}

pub(super) fn validate(t: &CreateTemplate) -> Result<(), InvalidField> {
    if let Some(image) = &t.image {
        validate_image(image)?;
    }
    if t.ports.vnc == 0 {
        return Err(InvalidField::VncPort);
    }
    if let Some(cpu) = t.resources.cpu_millis
        && !(1..=MAX_CPU_MILLIS).contains(&cpu)
    {
        return Err(InvalidField::CpuMillis(cpu));
    }
    if let Some(mem) = t.resources.memory_mib
        && !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mem)
    {
        return Err(InvalidField::MemoryMib(mem));
    }
    if let Some(idle) = t.idle_timeout_secs
        && !(1..=MAX_IDLE_TIMEOUT_SECS).contains(&idle)
    {
        return Err(InvalidField::IdleTimeout(idle));
    }
    Ok(())
}

/// An image reference as Docker and Kubernetes accept it, roughly: no whitespace or control
/// characters, not empty, not too long. The engine has the final word when it pulls.
fn validate_image(image: &str) -> Result<(), InvalidField> {
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return Err(InvalidField::ImageLength(image.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if let Some(bad) = image.chars().find(|c| !allowed(*c)) {
        return Err(InvalidField::ImageCharacter {
            image: image.to_owned(),
            bad,
        });
    }
    if image.starts_with(['.', '-', '/', ':', '@']) {
        return Err(InvalidField::ImageStart(image.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_proto::api::{TemplatePorts, TemplateResources};

    fn with(f: impl FnOnce(&mut CreateTemplate)) -> Result<(), String> {
        let mut t = CreateTemplate {
            name: "x".into(),
            image: Some("localhost/desktop:1".into()),
            ..CreateTemplate::default()
        };
        f(&mut t);
        validate(&t).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_sensible_values() {
        assert!(with(|_| {}).is_ok());
        assert!(
            with(|t| {
                t.image = Some("registry.example.com:5000/team/app@sha256:abc".into());
                t.ports = TemplatePorts { vnc: 5900 };
                t.resources = TemplateResources {
                    cpu_millis: Some(500),
                    memory_mib: Some(1024),
                };
                t.idle_timeout_secs = Some(1800);
            })
            .is_ok()
        );
    }

    #[test]
    fn refuses_out_of_range_values_naming_the_field() {
        type Change = fn(&mut CreateTemplate);
        let cases: [(&str, Change); 7] = [
            ("image", |t| t.image = Some(String::new())),
            ("image", |t| t.image = Some("my image".into())),
            ("image", |t| t.image = Some("-x".into())),
            ("ports.vnc", |t| t.ports.vnc = 0),
            ("cpu_millis", |t| t.resources.cpu_millis = Some(0)),
            ("memory_mib", |t| t.resources.memory_mib = Some(1)),
            ("idle_timeout_secs", |t| t.idle_timeout_secs = Some(0)),
        ];
        for (field, f) in cases {
            let err = with(f).expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn messages_are_the_ones_api_clients_know() {
        let cases: [(InvalidField, &str); 7] = [
            (
                InvalidField::VncPort,
                "ports.vnc must be a port number between 1 and 65535",
            ),
            (
                InvalidField::CpuMillis(0),
                "resources.cpu_millis must be between 1 and 256000 (thousandths of a core), got 0",
            ),
            (
                InvalidField::MemoryMib(1),
                "resources.memory_mib must be between 16 and 1048576, got 1",
            ),
            (
                InvalidField::IdleTimeout(0),
                "idle_timeout_secs must be between 1 and 2592000, got 0",
            ),
            (
                InvalidField::ImageLength(0),
                "image must be 1-255 characters, got 0",
            ),
            (
                InvalidField::ImageCharacter {
                    image: "my image".into(),
                    bad: ' ',
                },
                "image \"my image\" contains ' '; expected a reference like registry/name:tag",
            ),
            (
                InvalidField::ImageStart("-x".into()),
                "image \"-x\" must start with a letter or digit",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
    }
}
