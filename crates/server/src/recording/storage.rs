//! Where recordings are kept: the [`RecordingStorage`] interface, and its implementation over
//! the `object_store` crate, which gives both backends — a local directory (the default for
//! `streamspace up`, under the data directory) and any S3-compatible store.
//!
//! A recording is written as one streamed upload (S3: multipart, a 5 MiB part at a time, at
//! most two parts in flight), so memory per recording stays bounded whatever its length; it
//! becomes readable when it is finished. Keys are `<session id>/<recording id>.ssrec` under
//! the configured prefix.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use uuid::Uuid;

use crate::config::{RecordingStoreConfig, S3Config};

/// Parts of one upload in flight at once (each up to 5 MiB).
const PARTS_IN_FLIGHT: usize = 2;

/// The bytes of a stored recording, as they are read.
pub(crate) type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// What went wrong with the recording store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("the recording is not in the recording store")]
    NotFound,
    #[error("the recording store failed: {0}")]
    Failed(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Failed(other.to_string()),
        }
    }
}

/// A place recordings are written to, read from and deleted from.
#[async_trait]
pub(crate) trait RecordingStorage: Send + Sync + std::fmt::Debug {
    /// Starts writing the recording `key`.
    async fn create(&self, key: &str) -> Result<Box<dyn RecordingWriter>, StorageError>;
    /// Reads a finished recording.
    async fn read(&self, key: &str) -> Result<ByteStream, StorageError>;
    /// Deletes a recording; one already gone is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// One recording being written.
#[async_trait]
pub(crate) trait RecordingWriter: Send {
    /// Appends bytes; waits while the store is behind.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes what was written the stored recording.
    async fn finish(self: Box<Self>) -> Result<(), StorageError>;
}

/// The storage key of a recording.
pub(crate) fn key(session_id: Uuid, recording_id: Uuid) -> String {
    format!("{session_id}/{recording_id}.ssrec")
}

/// Opens the configured store (creating a local directory if needed); `None` when none is
/// configured. `tls` is what connections to an S3 endpoint trust.
pub(crate) fn open(
    config: Option<&RecordingStoreConfig>,
    tls: &rustls::ClientConfig,
) -> Result<Option<Arc<dyn RecordingStorage>>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let store: Arc<dyn ObjectStore> = match config {
        RecordingStoreConfig::Dir(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating the recording directory {}: {e}", dir.display()))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("the recording directory {}: {e}", dir.display()))?,
            )
        }
        RecordingStoreConfig::S3(s3) => Arc::new(s3_store(s3, tls)?),
    };
    let prefix = match config {
        RecordingStoreConfig::S3(s3) if !s3.prefix.is_empty() => {
            Some(Path::from(s3.prefix.as_str()))
        }
        _ => None,
    };
    Ok(Some(Arc::new(ObjectStorage { store, prefix })))
}

fn s3_store(
    s3: &S3Config,
    tls: &rustls::ClientConfig,
) -> Result<object_store::aws::AmazonS3, String> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .build()
        .map_err(|e| format!("the client for the S3 endpoint: {e}"))?;
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_http_connector(Connector(client));
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(id) = &s3.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    builder
        .build()
        .map_err(|e| format!("the S3 recording store: {e}"))
}

/// The workspace's reqwest client, with our TLS configuration, for `object_store`.
#[derive(Debug)]
struct Connector(reqwest::Client);

impl object_store::client::HttpConnector for Connector {
    fn connect(
        &self,
        _options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.0.clone()))
    }
}

/// Recordings as objects of an `object_store` store.
#[derive(Debug)]
struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
}

impl ObjectStorage {
    fn path(&self, key: &str) -> Path {
        match &self.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{key}")),
            None => Path::from(key),
        }
    }
}

#[async_trait]
impl RecordingStorage for ObjectStorage {
    async fn create(&self, key: &str) -> Result<Box<dyn RecordingWriter>, StorageError> {
        let upload = self.store.put_multipart(&self.path(key)).await?;
        Ok(Box::new(ObjectWriter(WriteMultipart::new(upload))))
    }

    async fn read(&self, key: &str) -> Result<ByteStream, StorageError> {
        let got = self.store.get(&self.path(key)).await?;
        Ok(got
            .into_stream()
            .map(|r| r.map_err(StorageError::from))
            .boxed())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

struct ObjectWriter(WriteMultipart);

#[async_trait]
impl RecordingWriter for ObjectWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.0.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.0.write(bytes);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), StorageError> {
        self.0.finish().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    async fn read_all(storage: &dyn RecordingStorage, key: &str) -> Result<Vec<u8>, StorageError> {
        let chunks: Vec<Bytes> = storage.read(key).await?.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Writes `len` bytes in chunks like a viewing's, reads them back, deletes them.
    async fn round_trip(storage: &dyn RecordingStorage, len: usize) -> anyhow::Result<()> {
        let key = key(Uuid::now_v7(), Uuid::now_v7());
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut writer = storage.create(&key).await?;
        for chunk in data.chunks(64 * 1024 + 7) {
            writer.write(chunk).await?;
        }
        writer.finish().await?;
        assert!(
            read_all(storage, &key).await? == data,
            "what was written reads back"
        );
        storage.delete(&key).await?;
        assert!(
            matches!(read_all(storage, &key).await, Err(StorageError::NotFound)),
            "a deleted recording is gone"
        );
        storage.delete(&key).await?;
        Ok(())
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        crate::tls::outgoing_config(&crate::config::ServerConfig::default())
            .expect("the default outgoing TLS configuration builds")
    }

    #[tokio::test]
    async fn a_directory_keeps_recordings() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = RecordingStoreConfig::Dir(dir.path().join("nested/recordings"));
        let storage = open(Some(&config), &tls())
            .map_err(anyhow::Error::msg)?
            .expect("configured");
        round_trip(storage.as_ref(), 200_000).await
    }

    /// Against a real S3-compatible server (moto); more than one 5 MiB part, so the upload is
    /// a true multipart one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_s3_bucket_keeps_recordings() -> anyhow::Result<()> {
        let moto = tokio::task::spawn_blocking(streamspace_testkit::MotoServer::start).await??;
        moto.create_bucket("recordings")?;
        let config =
            RecordingStoreConfig::parse("s3://recordings/prod/east").map_err(anyhow::Error::msg)?;
        let RecordingStoreConfig::S3(mut s3) = config else {
            anyhow::bail!("s3:// parses as an S3 store");
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("recordings", "prod/east")
        );
        s3.endpoint = Some(moto.endpoint());
        s3.access_key_id = Some("test-key".into());
        s3.secret_access_key = Some("test-secret".into());
        let storage = open(Some(&RecordingStoreConfig::S3(s3)), &tls())
            .map_err(anyhow::Error::msg)?
            .expect("configured");
        round_trip(storage.as_ref(), 11 * 1024 * 1024 + 3)
            .await
            .map_err(|e| e.context(moto.logs()))
    }
}
