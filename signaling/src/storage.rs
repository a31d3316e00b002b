//! Where media bytes live: a local directory by default, any S3-compatible store by URL, both through
//! the `object_store` crate.
//!
//! Key layout: `uploads/{media_id}/{offset}-{nonce}` for chunks in flight,
//! `originals/{class_id}/{media_id}` for a complete upload.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use models::{ClassId, MediaId};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("cannot create storage directory: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// `url`: `None` for `<data_dir>/media`, or e.g. `s3://bucket` (credentials and endpoint from
    /// the usual `AWS_*` variables).
    pub fn open(url: Option<&str>, data_dir: &Path) -> Result<Storage, StorageError> {
        let store: Arc<dyn ObjectStore> = match url {
            None => {
                let root = data_dir.join("media");
                std::fs::create_dir_all(&root)?;
                Arc::new(LocalFileSystem::new_with_prefix(root)?)
            }
            Some(raw) => {
                let bad = |message: String| StorageError::BadUrl { url: raw.to_owned(), message };
                let url = url::Url::parse(raw).map_err(|err| bad(err.to_string()))?;
                let options: Vec<(String, String)> = std::env::vars()
                    .filter(|(key, _)| key.starts_with("AWS_"))
                    .map(|(k, v)| (k.to_lowercase(), v))
                    .collect();
                let (store, prefix) =
                    object_store::parse_url_opts(&url, options).map_err(|err| bad(err.to_string()))?;
                if !prefix.as_ref().is_empty() {
                    return Err(bad("a path inside the bucket is not supported; use the bucket root".into()));
                }
                Arc::from(store)
            }
        };
        Ok(Storage { store })
    }

    pub fn from_store(store: Arc<dyn ObjectStore>) -> Storage {
        Storage { store }
    }

    pub fn chunk_key(media_id: &MediaId, offset: u64, nonce: &str) -> ObjectPath {
        ObjectPath::from(format!("uploads/{media_id}/{offset:020}-{nonce}"))
    }

    pub fn original_key(class_id: &ClassId, media_id: &MediaId) -> ObjectPath {
        ObjectPath::from(format!("originals/{class_id}/{media_id}"))
    }

    pub async fn put(&self, key: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        self.store.put(key, bytes.into()).await?;
        Ok(())
    }

    pub async fn get(&self, key: &ObjectPath) -> Result<Bytes, StorageError> {
        Ok(self.store.get(key).await?.bytes().await?)
    }

    pub async fn delete(&self, key: &ObjectPath) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Concatenates `parts` in order into `dest` with a multipart upload, streaming each part.
    pub async fn concatenate(&self, parts: &[ObjectPath], dest: &ObjectPath) -> Result<u64, StorageError> {
        let upload = self.store.put_multipart(dest).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut n_bytes = 0u64;
        for part in parts {
            let mut stream = self.store.get(part).await?.into_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                n_bytes += piece.len() as u64;
                writer.write(&piece);
            }
        }
        writer.finish().await?;
        Ok(n_bytes)
    }
}
