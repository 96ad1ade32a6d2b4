//! `streamspace session cp`: files into and out of a session's transfer folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use streamspace_client::Client;
use uuid::Uuid;

use crate::cli::OutputFormat;

/// One side of `cp`: a local file or a place in a session's transfer folder.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Session { id: Uuid, path: String },
}

/// `ID:PATH` when the text before the first `:` is a session id, else a local path.
fn place(arg: &str) -> Place {
    match arg.split_once(':') {
        Some((id, path)) => match Uuid::try_parse(id) {
            Ok(id) => Place::Session {
                id,
                path: path.to_owned(),
            },
            Err(_) => Place::Local(PathBuf::from(arg)),
        },
        None => Place::Local(PathBuf::from(arg)),
    }
}

/// `path`, or `path` + the file's name when it is empty or ends with `/`.
fn remote_name(path: &str, local: &Path) -> anyhow::Result<String> {
    if !path.is_empty() && !path.ends_with('/') {
        return Ok(path.to_owned());
    }
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", local.display()))?;
    Ok(format!("{path}{name}"))
}

pub async fn copy(api: &Client, from: &str, to: &str, output: OutputFormat) -> anyhow::Result<()> {
    match (place(from), place(to)) {
        (Place::Local(local), Place::Session { id, path }) => {
            upload(api, &local, id, &path, output).await
        }
        (Place::Session { id, path }, Place::Local(local)) => {
            download(api, id, &path, &local, output).await
        }
        (Place::Local(_), Place::Local(_)) => {
            bail!("one side must be a session's file, written ID:PATH (e.g. 0190…:report.pdf)")
        }
        (Place::Session { .. }, Place::Session { .. }) => {
            bail!("copying between two sessions is not supported: download, then upload")
        }
    }
}

async fn upload(
    api: &Client,
    local: &Path,
    id: Uuid,
    path: &str,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("opening {}", local.display()))?;
    let meta = file
        .metadata()
        .await
        .with_context(|| format!("reading {}", local.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", local.display());
    }
    let path = remote_name(path, local)?;
    let done = api
        .upload_file(id, &path, file, meta.len())
        .await
        .with_context(|| format!("uploading {} to session {id}", local.display()))?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&done)?),
        OutputFormat::Table => println!("uploaded {} bytes to {id}:{}", done.bytes, done.path),
    }
    Ok(())
}

async fn download(
    api: &Client,
    id: Uuid,
    path: &str,
    local: &Path,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let name = path.rsplit('/').next().filter(|n| !n.is_empty());
    let target = match name {
        Some(name) if local.is_dir() => local.join(name),
        _ => local.to_path_buf(),
    };
    // Written next to the target and renamed at the end: a failed download leaves nothing.
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", target.display()))?;
    let partial = target.with_file_name(format!(".{file_name}.part"));
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = api.download_file(id, path, &mut file).await;
    drop(file);
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e).with_context(|| format!("downloading {id}:{path}"));
        }
    };
    tokio::fs::rename(&partial, &target)
        .await
        .with_context(|| format!("moving the download to {}", target.display()))?;
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"path": target.display().to_string(), "bytes": bytes})
        ),
        OutputFormat::Table => println!("downloaded {bytes} bytes to {}", target.display()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_places_are_told_from_local_ones() {
        let id = Uuid::now_v7();
        assert_eq!(
            place(&format!("{id}:docs/a.txt")),
            Place::Session {
                id,
                path: "docs/a.txt".into()
            }
        );
        assert_eq!(place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(place("a.txt"), Place::Local("a.txt".into()));
        assert_eq!(
            remote_name("", Path::new("/tmp/x.bin")).ok().as_deref(),
            Some("x.bin")
        );
        assert_eq!(
            remote_name("in/", Path::new("x.bin")).ok().as_deref(),
            Some("in/x.bin")
        );
        assert_eq!(
            remote_name("y", Path::new("x.bin")).ok().as_deref(),
            Some("y")
        );
    }
}
