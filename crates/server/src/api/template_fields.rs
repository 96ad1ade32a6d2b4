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

pub(super) fn validate(t: &CreateTemplate) -> Result<(), String> {
    if let Some(image) = &t.image {
        validate_image(image)?;
    }
    if t.ports.vnc == 0 {
        return Err("ports.vnc must be a port number between 1 and 65535".into());
    }
    if let Some(cpu) = t.resources.cpu_millis
        && !(1..=MAX_CPU_MILLIS).contains(&cpu)
    {
        return Err(format!(
            "resources.cpu_millis must be between 1 and {MAX_CPU_MILLIS} (thousandths of a core), got {cpu}"
        ));
    }
    if let Some(mem) = t.resources.memory_mib
        && !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mem)
    {
        return Err(format!(
            "resources.memory_mib must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB}, got {mem}"
        ));
    }
    if let Some(idle) = t.idle_timeout_secs
        && !(1..=MAX_IDLE_TIMEOUT_SECS).contains(&idle)
    {
        return Err(format!(
            "idle_timeout_secs must be between 1 and {MAX_IDLE_TIMEOUT_SECS}, got {idle}"
        ));
    }
    Ok(())
}

/// An image reference as Docker and Kubernetes accept it, roughly: no whitespace or control
/// characters, not empty, not too long. The engine has the final word when it pulls.
fn validate_image(image: &str) -> Result<(), String> {
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return Err(format!(
            "image must be 1-{MAX_IMAGE_LEN} characters, got {}",
            image.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if let Some(bad) = image.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "image {image:?} contains {bad:?}; expected a reference like registry/name:tag"
        ));
    }
    if image.starts_with(['.', '-', '/', ':', '@']) {
        return Err(format!("image {image:?} must start with a letter or digit"));
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
        validate(&t)
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
}
