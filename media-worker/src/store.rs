//! Object storage shared with `signaling`: a local directory by default, any S3-compatible store by
//! URL, both through the `object_store` crate. Files move in streamed parts, never whole in memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid storage URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Store(object_store::Error::NotFound { .. }))
    }
}

/// Opens the store: `url` `None` for the directory `local_root`, else e.g. `s3://bucket`.
/// `options` are object_store's (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
/// `aws_allow_http`, ...), on top of the `AWS_*` variables of the environment.
pub fn open(
    url: Option<&str>,
    local_root: &Path,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match url {
        None => {
            std::fs::create_dir_all(local_root)?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(local_root)?))
        }
        Some(raw) => {
            let bad = |message: String| StoreError::BadUrl { url: raw.to_owned(), message };
            let url = url::Url::parse(raw).map_err(|err| bad(err.to_string()))?;
            let mut merged: BTreeMap<String, String> = std::env::vars()
                .filter(|(key, _)| key.starts_with("AWS_"))
                .map(|(key, value)| (key.to_lowercase(), value))
                .collect();
            merged.extend(options.iter().map(|(key, value)| (key.to_lowercase(), value.clone())));
            let (store, prefix) =
                object_store::parse_url_opts(&url, merged).map_err(|err| bad(err.to_string()))?;
            if !prefix.as_ref().is_empty() {
                return Err(bad("a path inside the bucket is not supported; use the bucket root".into()));
            }
            Ok(Arc::from(store))
        }
    }
}

/// Part size of multipart uploads: S3's minimum is 5 MiB.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Streams the object at `key` into the file `dest`. Returns its size.
pub async fn download(store: &dyn ObjectStore, key: &str, dest: &Path) -> Result<u64, StoreError> {
    let mut stream = store.get(&ObjectPath::from(key)).await?.into_stream();
    let mut file = tokio::fs::File::create(dest).await?;
    let mut n_bytes = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        n_bytes += piece.len() as u64;
        file.write_all(&piece).await?;
    }
    file.flush().await?;
    Ok(n_bytes)
}

/// Streams the file `src` to `key`, replacing what was there. The object appears whole or not at
/// all. Returns its size.
pub async fn upload(store: &dyn ObjectStore, src: &Path, key: &str) -> Result<u64, StoreError> {
    let mut file = tokio::fs::File::open(src).await?;
    let mut writer =
        WriteMultipart::new_with_chunk_size(store.put_multipart(&ObjectPath::from(key)).await?, PART_BYTES);
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut n_bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        n_bytes += n as u64;
        writer.wait_for_capacity(4).await?;
        writer.write(&buffer[..n]);
    }
    writer.finish().await?;
    Ok(n_bytes)
}

/// Stores small bytes (a thumbnail, a JSON file) at `key`.
pub async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
    store.put(&ObjectPath::from(key), bytes.into()).await?;
    Ok(())
}

/// Keys under `prefix`.
pub async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<String>, StoreError> {
    let prefix = ObjectPath::from(prefix);
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    Ok(metas.into_iter().map(|meta| meta.location.to_string()).collect())
}

/// Deletes `key`; a key already gone is fine.
pub async fn delete(store: &dyn ObjectStore, key: &str) -> Result<(), StoreError> {
    match store.delete(&ObjectPath::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Deletes every key under `prefix`.
pub async fn delete_prefix(store: &dyn ObjectStore, prefix: &str) -> Result<(), StoreError> {
    for key in list(store, prefix).await? {
        delete(store, &key).await?;
    }
    Ok(())
}
