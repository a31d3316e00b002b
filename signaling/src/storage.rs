//! Where media bytes live: a local directory by default, any S3-compatible store by URL, both through
//! the `object_store` crate.
//!
//! Key layout: `uploads/{media_id}/{offset}-{nonce}` for chunks in flight,
//! `originals/{class_id}/{media_id}` for a complete upload, and (written by `media-worker`)
//! `published/{class_id}/{media_id}/v{version}/{file}` for what members see.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use models::{ClassId, MediaId};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Open(#[from] media_worker::store::StoreError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Store(object_store::Error::NotFound { .. }))
    }
}

/// A byte range of a stored file, ready to stream.
pub struct Ranged {
    /// Size of the whole object.
    pub size: u64,
    /// The bytes served: `start..end`.
    pub range: std::ops::Range<u64>,
    pub body: futures_util::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// `url`: `None` for `<data_dir>/media`, or e.g. `s3://bucket` (see
    /// [`media_worker::store::open`] for credentials and endpoint).
    pub fn open(
        url: Option<&str>,
        data_dir: &Path,
        options: &BTreeMap<String, String>,
    ) -> Result<Storage, StorageError> {
        Ok(Storage { store: media_worker::store::open(url, &data_dir.join("media"), options)? })
    }

    /// The store itself, for the media workers this process runs.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
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

    /// Size of the object at `key`.
    pub async fn size(&self, key: &ObjectPath) -> Result<u64, StorageError> {
        Ok(self.store.head(key).await?.size)
    }

    /// Streams `range` (end exclusive, already checked against the size) of the object, or all of it.
    pub async fn get_range(
        &self,
        key: &ObjectPath,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Ranged, StorageError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(key, options).await?;
        let size = result.meta.size;
        let range = result.range.clone();
        Ok(Ranged { size, range, body: result.into_stream() })
    }

    /// Deletes `key`; a key already gone is fine.
    pub async fn delete(&self, key: &ObjectPath) -> Result<(), StorageError> {
        Ok(media_worker::store::delete(self.store.as_ref(), key.as_ref()).await?)
    }

    /// Deletes every file of a class: originals, published versions, chunks of unfinished uploads.
    pub async fn delete_class_files(
        &self,
        class_id: &ClassId,
        media_ids: &[MediaId],
    ) -> Result<(), StorageError> {
        let mut prefixes = vec![format!("originals/{class_id}/"), format!("published/{class_id}/")];
        prefixes.extend(media_ids.iter().map(|media_id| format!("uploads/{media_id}/")));
        for prefix in prefixes {
            media_worker::store::delete_prefix(self.store.as_ref(), &prefix).await?;
        }
        Ok(())
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
