//! The blob store: where personalized chapters are kept as markdown objects.
//!
//! One port, [`BlobStore`], with two adapters: `S3Store` (a bucket, or any S3-compatible
//! server; the `s3` feature) in the cloud and [`DirStore`] (a local folder) on a laptop and in
//! tests. Callers hold an `Arc<dyn BlobStore>` and never know which one they have.

use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "s3")]
use aws_sdk_s3::{
    config::timeout::TimeoutConfig,
    config::{RequestChecksumCalculation, ResponseChecksumValidation},
    presigning::PresigningConfig,
    primitives::ByteStream,
    types::{Delete, ObjectIdentifier},
};

use crate::error::Error;
#[cfg(feature = "s3")]
use crate::infra::config::S3Config;
use crate::infra::deadline;

/// What every store method returns: a boxed future, so the trait stays object-safe.
pub type BlobFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BlobError>> + Send + 'a>>;

/// A key-value store of objects, addressed by [`ObjectKey`].
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key`, replacing what was there. When it returns `Ok`, a `get` of
    /// the key sees the whole object.
    fn put<'a>(&'a self, key: &'a ObjectKey, body: Vec<u8>, content_type: &'a str) -> BlobFuture<'a, ()>;

    /// The object under `key`, or `None` when there is none.
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, Option<Vec<u8>>>;

    /// Removes the object under `key`; removing a missing object is not an error.
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, ()>;

    /// Removes every object under `prefix` and says how many there were.
    fn delete_prefix<'a>(&'a self, prefix: &'a KeyPrefix) -> BlobFuture<'a, u64>;

    /// Removes the objects under `keys` (missing ones count as removed) and returns the keys it
    /// could not remove. A store that can removes many in one request (S3's `DeleteObjects`);
    /// by default they go one by one.
    fn delete_many<'a>(&'a self, keys: &'a [ObjectKey]) -> BlobFuture<'a, Vec<ObjectKey>> {
        Box::pin(async move {
            let mut refused = Vec::new();
            for key in keys {
                if let Err(e) = self.delete(key).await {
                    tracing::warn!(error = %crate::error::ErrorChain(&e), "removing an object failed");
                    refused.push(key.clone());
                }
            }
            Ok(refused)
        })
    }

    /// A URL that fetches the object without credentials for `ttl`, or `None` when the store
    /// cannot hand out URLs (a local folder).
    fn presign_get<'a>(&'a self, key: &'a ObjectKey, ttl: Duration) -> BlobFuture<'a, Option<String>>;

    /// Whether [`BlobStore::presign_get`] hands out URLs (a bucket) or not (a local folder).
    fn presigns(&self) -> bool {
        false
    }
}

/// A store operation failed: the store is unreachable or refused the request.
#[derive(Debug, thiserror::Error)]
#[error("blob store: {operation} {key} failed")]
pub struct BlobError {
    operation: &'static str,
    key: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BlobError {
    /// `operation` on `key` failed because of `source`.
    pub fn new(
        operation: &'static str,
        key: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { operation, key: key.to_owned(), source: source.into() }
    }
}

impl From<BlobError> for Error {
    /// The caller may retry later: a 503, never a 500.
    fn from(e: BlobError) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

/// An object's key: `/`-separated segments of `[A-Za-z0-9._-]`, none of them empty, `.` or
/// `..`, so it means the same thing in a bucket and as a relative path under a folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses a key.
    pub fn parse(key: &str) -> Result<Self, String> {
        check_segments(key)?;
        Ok(Self(key.to_owned()))
    }

    /// The key as the store sees it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A folder of keys: segments like an [`ObjectKey`]'s, followed by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Parses a prefix; it must end with `/`, so `users/1/` never matches `users/10/...`.
    pub fn parse(prefix: &str) -> Result<Self, String> {
        let folder =
            prefix.strip_suffix('/').ok_or_else(|| format!("prefix {prefix:?} must end with '/'"))?;
        check_segments(folder)?;
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix as the store sees it, with its trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_segments(path: &str) -> Result<(), String> {
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if path.len() <= 1024 && path.split('/').all(safe) {
        Ok(())
    } else {
        Err(format!("{path:?} is not a safe object key"))
    }
}

/// A local folder: each key is a file under the root. The default when no bucket is
/// configured.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store under `root`; the folder is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder objects live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> PathBuf {
        // Keys are checked segment by segment, so this never leaves the root.
        self.root.join(key)
    }
}

impl BlobStore for DirStore {
    fn put<'a>(&'a self, key: &'a ObjectKey, body: Vec<u8>, _: &'a str) -> BlobFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            let path = self.path_of(key.as_str());
            let fail = |e: std::io::Error| BlobError::new("put", key.as_str(), e);
            let dir = path.parent().expect("a key has at least one segment");
            tokio::fs::create_dir_all(dir).await.map_err(fail)?;
            // Written aside and renamed into place, so a reader never sees half an object.
            let partial = dir.join(format!(".{}.partial", uuid::Uuid::new_v4()));
            tokio::fs::write(&partial, body).await.map_err(fail)?;
            if let Err(e) = tokio::fs::rename(&partial, &path).await {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(fail(e));
            }
            Ok(())
        }))
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, Option<Vec<u8>>> {
        Box::pin(deadline::exempt(async move {
            match tokio::fs::read(self.path_of(key.as_str())).await {
                Ok(body) => Ok(Some(body)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(BlobError::new("get", key.as_str(), e)),
            }
        }))
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            match tokio::fs::remove_file(self.path_of(key.as_str())).await {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(BlobError::new("delete", key.as_str(), e)),
                _ => Ok(()),
            }
        }))
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a KeyPrefix) -> BlobFuture<'a, u64> {
        Box::pin(deadline::exempt(async move {
            let folder = self.path_of(prefix.as_str());
            let removed = tokio::task::spawn_blocking(move || remove_tree(&folder))
                .await
                .map_err(|e| BlobError::new("delete_prefix", prefix.as_str(), e))?;
            removed.map_err(|e| BlobError::new("delete_prefix", prefix.as_str(), e))
        }))
    }

    fn presign_get<'a>(&'a self, _: &'a ObjectKey, _: Duration) -> BlobFuture<'a, Option<String>> {
        Box::pin(async { Ok(None) })
    }
}

/// Removes a folder and everything in it; returns how many files it held (0 if it is missing).
fn remove_tree(folder: &Path) -> std::io::Result<u64> {
    fn count(dir: &Path) -> std::io::Result<u64> {
        let mut files = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                files += count(&entry.path())?;
            } else if !entry.file_name().to_string_lossy().ends_with(".partial") {
                files += 1;
            }
        }
        Ok(files)
    }
    let files = match count(folder) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    match std::fs::remove_dir_all(folder) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(files),
    }
}

#[cfg(feature = "s3")]
/// An S3 bucket, or a bucket on an S3-compatible server (endpoint override, path-style).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

#[cfg(feature = "s3")]
/// How many keys one `DeleteObjects` request may name.
const DELETE_BATCH: usize = 1000;

#[cfg(feature = "s3")]
impl S3Store {
    /// A store from the SDK's shared configuration (region, credentials, its HTTPS client when
    /// it has one) and `s3`'s bucket, endpoint and addressing.
    pub fn new(sdk: &aws_config::SdkConfig, s3: &S3Config) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(s3.path_style)
            // S3-compatible servers reject or mishandle the SDK's default checksums; AWS
            // itself needs them only where an operation requires one.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A store that hangs must not hold the request (and the Lambda) with it.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(s3.connect_timeout)
                    .operation_timeout(s3.operation_timeout)
                    .build(),
            );
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if sdk.http_client().is_none() {
            builder = builder.http_client(crate::infra::aws_https::client());
        }
        Self { client: aws_sdk_s3::Client::from_conf(builder.build()), bucket: s3.bucket.clone() }
    }

    /// The SDK client, for what the port does not cover (e.g. creating a bucket in a test).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket objects go to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn keys_under(&self, prefix: &KeyPrefix) -> Result<Vec<String>, BlobError> {
        let mut keys = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix.as_str())
                .set_continuation_token(continuation)
                .send()
                .await
                .map_err(|e| BlobError::new("list", prefix.as_str(), e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            continuation = page.next_continuation_token().map(str::to_owned);
            if continuation.is_none() {
                return Ok(keys);
            }
        }
    }

    /// One `DeleteObjects` request for at most [`DELETE_BATCH`] keys; the keys S3 reported it
    /// did not delete (a 200 can still refuse some).
    async fn delete_batch(&self, keys: &[impl AsRef<str>]) -> Result<Vec<String>, BlobError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| BlobError::new("delete_objects", "many", e);
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k.as_ref()).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.into()))?;
        let delete =
            Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(|e| fail(e.into()))?;
        let done = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| fail(e.into()))?;
        Ok(done.errors().iter().filter_map(|e| e.key().map(str::to_owned)).collect())
    }
}

#[cfg(feature = "s3")]
impl BlobStore for S3Store {
    fn put<'a>(&'a self, key: &'a ObjectKey, body: Vec<u8>, content_type: &'a str) -> BlobFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .content_type(content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| BlobError::new("put", key.as_str(), e))?;
            Ok(())
        }))
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, Option<Vec<u8>>> {
        Box::pin(deadline::exempt(async move {
            let fail = |e: Box<dyn std::error::Error + Send + Sync>| BlobError::new("get", key.as_str(), e);
            let sent = self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await;
            let object = match sent {
                Ok(object) => object,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
                Err(e) => return Err(fail(e.into())),
            };
            let body = object.body.collect().await.map_err(|e| fail(e.into()))?;
            Ok(Some(body.into_bytes().to_vec()))
        }))
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BlobFuture<'a, ()> {
        Box::pin(deadline::exempt(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .send()
                .await
                .map_err(|e| BlobError::new("delete", key.as_str(), e))?;
            Ok(())
        }))
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a KeyPrefix) -> BlobFuture<'a, u64> {
        Box::pin(deadline::exempt(async move {
            let keys = self.keys_under(prefix).await?;
            for batch in keys.chunks(DELETE_BATCH) {
                if let Some(refused) = self.delete_batch(batch).await?.first() {
                    let reason = format!("{refused} was not removed");
                    return Err(BlobError::new("delete_prefix", prefix.as_str(), reason));
                }
            }
            Ok(keys.len() as u64)
        }))
    }

    fn delete_many<'a>(&'a self, keys: &'a [ObjectKey]) -> BlobFuture<'a, Vec<ObjectKey>> {
        Box::pin(deadline::exempt(async move {
            let mut refused = Vec::new();
            for batch in keys.chunks(DELETE_BATCH) {
                let names: Vec<&str> = batch.iter().map(ObjectKey::as_str).collect();
                match self.delete_batch(&names).await {
                    Ok(not_removed) => {
                        refused.extend(
                            batch.iter().filter(|k| not_removed.iter().any(|n| n == k.as_str())).cloned(),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::error::ErrorChain(&e), keys = batch.len(), "a DeleteObjects request failed");
                        refused.extend_from_slice(batch);
                    }
                }
            }
            Ok(refused)
        }))
    }

    fn presigns(&self) -> bool {
        true
    }

    fn presign_get<'a>(&'a self, key: &'a ObjectKey, ttl: Duration) -> BlobFuture<'a, Option<String>> {
        Box::pin(deadline::exempt(async move {
            let fail =
                |e: Box<dyn std::error::Error + Send + Sync>| BlobError::new("presign", key.as_str(), e);
            let presigning = PresigningConfig::expires_in(ttl).map_err(|e| fail(e.into()))?;
            let request = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .presigned(presigning)
                .await
                .map_err(|e| fail(e.into()))?;
            Ok(Some(request.uri().to_owned()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap()
    }

    #[test]
    fn keys_that_could_escape_a_folder_are_refused() {
        for bad in ["", "/abs", "a//b", "a/../b", "..", "a/./b", "a b", "a/b/", "ä"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ObjectKey::parse("personalized/u-1/3/v2-ab12.md").is_ok());
    }

    #[test]
    fn prefixes_end_with_a_slash() {
        assert!(KeyPrefix::parse("personalized/u1").is_err());
        assert!(KeyPrefix::parse("personalized/../").is_err());
        assert_eq!(KeyPrefix::parse("personalized/u1/").unwrap().as_str(), "personalized/u1/");
    }

    fn temp_store() -> DirStore {
        DirStore::new(std::env::temp_dir().join(format!("primer-blob-test-{}", uuid::Uuid::new_v4())))
    }

    #[tokio::test]
    async fn dir_store_puts_gets_and_deletes() {
        let store = temp_store();
        let k = key("personalized/u1/1/v1-abc.md");
        assert_eq!(store.get(&k).await.unwrap(), None);
        store.put(&k, b"# One".to_vec(), "text/markdown").await.unwrap();
        store.put(&k, b"# One, again".to_vec(), "text/markdown").await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"# One, again"[..]));
        store.delete(&k).await.unwrap();
        store.delete(&k).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), None);
        assert_eq!(store.presign_get(&k, Duration::from_secs(60)).await.unwrap(), None);
        std::fs::remove_dir_all(store.root()).unwrap();
    }

    #[tokio::test]
    async fn dir_store_deletes_a_prefix_and_nothing_beside_it() {
        let store = temp_store();
        for k in ["p/u1/1/a.md", "p/u1/2/b.md", "p/u10/1/c.md"] {
            store.put(&key(k), b"x".to_vec(), "text/markdown").await.unwrap();
        }
        let removed = store.delete_prefix(&KeyPrefix::parse("p/u1/").unwrap()).await.unwrap();
        assert_eq!(removed, 2);
        assert_eq!(store.get(&key("p/u1/1/a.md")).await.unwrap(), None);
        assert!(store.get(&key("p/u10/1/c.md")).await.unwrap().is_some());
        assert_eq!(store.delete_prefix(&KeyPrefix::parse("p/nobody/").unwrap()).await.unwrap(), 0);
        std::fs::remove_dir_all(store.root()).unwrap();
    }
}
