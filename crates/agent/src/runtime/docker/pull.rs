//! Pulling a session image the Docker host does not have yet.

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::{DockerRuntime, RuntimeError};

/// `name` and tag of an image reference; `latest` when it names neither a tag nor a digest (the
/// API would otherwise pull every tag).
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&image[..image.len() - tag.len() - 1], Some(tag)),
        None => (image, Some("latest")),
    }
}

impl DockerRuntime {
    /// Pulls `image` (public registries or ones the engine is already logged in to), within the
    /// pull timeout.
    pub(super) async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let (name, tag) = split_reference(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(name);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let mut progress = self.docker.create_image(Some(options.build()), None, None);
        let pulled = tokio::time::timeout(self.config.pull_timeout, async {
            while let Some(step) = progress.next().await {
                step.map_err(|source| RuntimeError::ImagePull {
                    image: image.to_owned(),
                    source,
                })?;
            }
            Ok(())
        })
        .await;
        match pulled {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::StartFailed(format!(
                "image {image:?} is not on the Docker host and pulling it gave no result within {:?}",
                self.config.pull_timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_get_a_tag_unless_they_have_one_or_a_digest() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(
            split_reference("reg:5000/team/app:1.2"),
            ("reg:5000/team/app", Some("1.2"))
        );
        assert_eq!(
            split_reference("reg:5000/team/app"),
            ("reg:5000/team/app", Some("latest"))
        );
        assert_eq!(split_reference("app@sha256:ab"), ("app@sha256:ab", None));
    }
}
