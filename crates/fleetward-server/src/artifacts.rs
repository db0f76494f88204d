//! The artifact store: release images and SBOMs, content-addressed.
//!
//! Bytes live behind the `object_store` crate (the local filesystem under
//! `<data-dir>/artifacts` by default), named `sha256/<hex>`. An upload streams
//! into a staging object while SHA-256 and SHA-512 are computed on the way;
//! only when the whole body arrived, fitted the size limit and matched the
//! declared hash and length does it move to its content address. A body cut
//! off half-way, too long, or with the wrong hash leaves nothing behind.
//! Downloads stream from the object (a file, on the local store) in large
//! chunks and never hold a whole artifact in memory.
//!
//! Several replicas cannot share a local directory without a shared volume,
//! so the same store runs on S3-compatible object storage
//! (`--artifact-store s3://bucket/prefix`): uploads become S3 multipart
//! uploads of 8 MiB parts, downloads stream ranged GETs, and, when
//! `presign` is set, devices are sent to a short-lived pre-signed URL
//! instead, so image bytes do not pass through the server at all (the agent
//! verifies hash and length either way; the URL is the only credential it
//! carries, and it expires). S3 has no rename: a finished upload is copied to
//! its content address unless that address already holds it (same hash,
//! same bytes, so a racing duplicate copy writes identical content).
//! Credentials come from the configuration or the standard `AWS_*`
//! environment and are never logged.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Staging parts are this large; the store writes them as they fill.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once during an upload.
const PARTS_IN_FLIGHT: usize = 2;
/// Read size when streaming a file to a client.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("declared {what} {declared} but received {actual}")]
    Mismatch {
        what: &'static str,
        declared: String,
        actual: String,
    },
    #[error("the upload was cut off after {received} bytes")]
    CutOff { received: u64 },
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("artifact store configuration: {0}")]
    Config(String),
}

/// The longest a pre-signed download URL may live: it is a bearer
/// credential for one image, so it must be short.
pub const MAX_PRESIGN: std::time::Duration = std::time::Duration::from_secs(3600);

/// S3-compatible object storage for artifacts. Anything left `None` comes
/// from the standard `AWS_*` environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, …).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); AWS when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints (a local object store without TLS).
    pub allow_http: bool,
    /// Send devices to a pre-signed URL valid this long instead of
    /// streaming through the server; at most [`MAX_PRESIGN`].
    pub presign: Option<std::time::Duration>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line, even through `{:?}` of the
        // whole server configuration.
        f.debug_struct("S3Settings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("presign", &self.presign)
            .finish()
    }
}

/// Splits `s3://bucket/prefix` into the bucket and the key prefix.
pub fn parse_s3_url(url: &str) -> Result<(String, Option<Path>), ArtifactError> {
    let bad =
        |why: &str| ArtifactError::Config(format!("{url:?} is not s3://bucket[/prefix]: {why}"));
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("the scheme must be s3"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3 bucket names: 3-63 of lowercase letters, digits, '.', '-'.
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid_bucket {
        return Err(bad("invalid bucket name"));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        None
    } else {
        Some(Path::parse(prefix).map_err(|e| bad(&e.to_string()))?)
    };
    Ok((bucket.to_owned(), prefix))
}

/// What an uploader says it is sending; every field given is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub sha256: Option<String>,
    pub sha512: Option<String>,
    pub length: Option<u64>,
}

/// An artifact that is now stored at its content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub sha256: String,
    pub sha512: String,
    pub length: u64,
}

/// A byte range of a stored artifact, ready to stream.
pub struct Download {
    pub body: axum::body::Body,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket (S3); none on the local store.
    prefix: Option<Path>,
    /// Pre-signs download URLs, and for how long (S3 with `presign`).
    presigner: Option<(Arc<dyn Signer>, std::time::Duration)>,
    /// Where the artifacts are, for messages (no credentials).
    location: String,
    max_bytes: u64,
}

/// Whether `text` is lowercase hex of `len` characters (a hash we name files by).
pub fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ArtifactStore {
    /// The local-filesystem store under `dir` (created if needed).
    pub fn local(dir: &FsPath, max_bytes: u64) -> Result<Self, ArtifactError> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        let mut this = Self::new(Arc::new(store), max_bytes);
        this.location = dir.display().to_string();
        Ok(this)
    }

    /// The store on S3-compatible object storage. Nothing is contacted
    /// yet; [`ArtifactStore::probe`] checks bucket and credentials.
    pub fn s3(settings: &S3Settings, max_bytes: u64) -> Result<Self, ArtifactError> {
        let (bucket, prefix) = parse_s3_url(&settings.url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if settings.allow_http {
            builder = builder.with_allow_http(true);
        }
        // object_store retries for up to three minutes by default; an
        // operator's upload or a device's download should fail clearly
        // within seconds when the store is down, and be retried by them.
        builder = builder.with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(15),
            ..object_store::RetryConfig::default()
        });
        let presign = match settings.presign {
            Some(ttl) if ttl.is_zero() || ttl > MAX_PRESIGN => {
                return Err(ArtifactError::Config(format!(
                    "pre-signed URLs must live between 1 s and {} s",
                    MAX_PRESIGN.as_secs()
                )));
            }
            other => other,
        };
        let s3 = Arc::new(builder.build()?);
        Ok(ArtifactStore {
            store: s3.clone(),
            prefix,
            presigner: presign.map(|ttl| (s3 as Arc<dyn Signer>, ttl)),
            location: settings.url.clone(),
            max_bytes,
        })
    }

    pub fn new(store: Arc<dyn ObjectStore>, max_bytes: u64) -> Self {
        ArtifactStore {
            store,
            prefix: None,
            presigner: None,
            location: "object store".to_owned(),
            max_bytes,
        }
    }

    /// Where the artifacts are (a directory or `s3://bucket/prefix`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Checks that the store answers with these credentials (a listing of
    /// the prefix), so a missing bucket or a wrong key stops the server at
    /// start-up with a clear message instead of failing the first upload.
    pub async fn probe(&self) -> Result<(), ArtifactError> {
        self.store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(ArtifactError::from)
    }

    /// Whether device downloads are sent to pre-signed URLs.
    pub fn presigns(&self) -> bool {
        self.presigner.is_some()
    }

    /// A short-lived URL for `sha256` when downloads are pre-signed.
    pub async fn presigned_url(&self, sha256: &str) -> Result<Option<String>, ArtifactError> {
        let Some((signer, ttl)) = &self.presigner else {
            return Ok(None);
        };
        let url = signer
            .signed_url(http::Method::GET, &self.content_path(sha256), *ttl)
            .await?;
        Ok(Some(url.to_string()))
    }

    fn path(&self, relative: &str) -> Path {
        let relative = Path::from(relative);
        match &self.prefix {
            Some(prefix) => prefix.parts().chain(relative.parts()).collect(),
            None => relative,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn content_path(&self, sha256: &str) -> Path {
        self.path(&format!("sha256/{sha256}"))
    }

    /// Streams `body` into the store, hashing on the way, and moves it to its
    /// content address once complete and as declared. On any failure the
    /// staged bytes are removed.
    pub async fn ingest<S, E>(
        &self,
        body: S,
        declared: &Declared,
    ) -> Result<Ingested, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if declared
            .length
            .is_some_and(|length| length > self.max_bytes)
        {
            return Err(ArtifactError::TooLarge {
                limit: self.max_bytes,
            });
        }
        let mut name = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let staging = self.path(&format!("uploads/{}", hex::encode(name)));
        let upload = self.store.put_multipart(&staging).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut sha256 = Sha256::new();
        let mut sha512 = Sha512::new();
        let mut received: u64 = 0;
        let limit = declared
            .length
            .unwrap_or(self.max_bytes)
            .min(self.max_bytes);
        let mut body = std::pin::pin!(body);
        let outcome: Result<(), ArtifactError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    tracing::info!(error = %e, received, "artifact upload interrupted");
                    ArtifactError::CutOff { received }
                })?;
                received += chunk.len() as u64;
                if received > limit {
                    return Err(match declared.length {
                        Some(length) if length < self.max_bytes => ArtifactError::Mismatch {
                            what: "length",
                            declared: length.to_string(),
                            actual: format!("more than {length}"),
                        },
                        _ => ArtifactError::TooLarge {
                            limit: self.max_bytes,
                        },
                    });
                }
                sha256.update(&chunk);
                sha512.update(&chunk);
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            let _ = writer.abort().await;
            return Err(error);
        }
        let ingested = Ingested {
            sha256: hex::encode(sha256.finalize()),
            sha512: hex::encode(sha512.finalize()),
            length: received,
        };
        let mismatch = check_declared(declared, &ingested);
        if let Some(error) = mismatch {
            let _ = writer.abort().await;
            return Err(error);
        }
        writer.finish().await?;
        let target = self.content_path(&ingested.sha256);
        let moved = match self.store.rename_if_not_exists(&staging, &target).await {
            // S3 has no rename and no portable copy-if-absent: copy unless
            // the address holds the content already. Both racers of a
            // duplicate upload copy the same bytes, so the race is harmless.
            Err(object_store::Error::NotSupported { .. }) => match self.store.head(&target).await {
                Ok(_) => Err(object_store::Error::AlreadyExists {
                    path: target.to_string(),
                    source: "stored before".into(),
                }),
                Err(object_store::Error::NotFound { .. }) => {
                    match self.store.copy(&staging, &target).await {
                        Ok(()) => self.store.delete(&staging).await,
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            },
            other => other,
        };
        match moved {
            Ok(()) => {}
            // Same content stored before: keep the first copy.
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.store.delete(&staging).await?;
            }
            Err(error) => {
                let _ = self.store.delete(&staging).await;
                return Err(error.into());
            }
        }
        Ok(ingested)
    }

    /// Streams `range` of the artifact `sha256` (which must be stored).
    pub async fn download(
        &self,
        sha256: &str,
        range: Range<u64>,
    ) -> Result<Download, ArtifactError> {
        let options = GetOptions {
            range: (range.end > range.start).then(|| GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.content_path(sha256), options)
            .await?;
        let body = match result.payload {
            // The local store hands over the open file: read it in large
            // chunks instead of the store's small ones.
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                let reader = file.take(range.end.saturating_sub(range.start));
                axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                    reader, READ_CHUNK,
                ))
            }
            GetResultPayload::Stream(stream) => {
                axum::body::Body::from_stream(stream.map_err(std::io::Error::other))
            }
        };
        Ok(Download { body })
    }

    /// Whether the content of `sha256` is stored (the database row alone is
    /// not proof: rows and bytes are written separately).
    pub async fn contains(&self, sha256: &str) -> Result<bool, ArtifactError> {
        match self.store.head(&self.content_path(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Staged uploads left over (by a crash); none after clean failures.
    pub async fn staged_uploads(&self) -> Result<usize, ArtifactError> {
        let prefix = self.path("uploads");
        let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(listed.len())
    }
}

fn check_declared(declared: &Declared, got: &Ingested) -> Option<ArtifactError> {
    let mismatch = |what, declared: &str, actual: &str| {
        (declared != actual).then(|| ArtifactError::Mismatch {
            what,
            declared: declared.to_owned(),
            actual: actual.to_owned(),
        })
    };
    if declared.length.is_some_and(|length| length != got.length) {
        return Some(ArtifactError::CutOff {
            received: got.length,
        });
    }
    declared
        .sha256
        .as_deref()
        .and_then(|d| mismatch("sha256", d, &got.sha256))
        .or_else(|| {
            declared
                .sha512
                .as_deref()
                .and_then(|d| mismatch("sha512", d, &got.sha512))
        })
}

/// The default artifact directory inside a data dir.
pub fn default_dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("artifacts")
}

/// A parsed `Range` header against an artifact of `length` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: send everything with 200.
    Full,
    /// Send these bytes with 206.
    Partial(Range<u64>),
    /// 416, with `Content-Range: bytes */length`.
    Unsatisfiable,
}

/// Interprets a `Range` header (RFC 9110 §14.2). One range is served; a
/// header we do not understand, or several ranges, get the whole artifact,
/// which the RFC allows.
pub fn parse_range(header: Option<&str>, length: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(end) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if length > 0 => RangeAnswer::Partial(length.saturating_sub(n)..length),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, true) => match parse(start) {
            Some(s) if s < length => RangeAnswer::Partial(s..length),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, false) => match (parse(start), parse(end)) {
            (Some(s), Some(e)) if s > e => RangeAnswer::Full,
            (Some(s), Some(_)) if s >= length => RangeAnswer::Unsatisfiable,
            (Some(s), Some(e)) => RangeAnswer::Partial(s..e.saturating_add(1).min(length)),
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::{RangeAnswer as R, parse_range};

    #[test]
    fn ranges() {
        let check = |header: Option<&str>, expected: R| {
            assert_eq!(parse_range(header, 1000), expected, "{header:?}");
        };
        check(None, R::Full);
        check(Some("bytes=0-99"), R::Partial(0..100));
        check(Some("bytes=900-"), R::Partial(900..1000));
        check(Some("bytes=-100"), R::Partial(900..1000));
        check(Some("bytes=-5000"), R::Partial(0..1000));
        check(Some("bytes=990-5000"), R::Partial(990..1000));
        check(Some("bytes=999-999"), R::Partial(999..1000));
        check(Some("bytes=1000-"), R::Unsatisfiable);
        check(Some("bytes=1000-1001"), R::Unsatisfiable);
        check(Some("bytes=-0"), R::Unsatisfiable);
        check(Some("bytes=5-1"), R::Full);
        check(Some("bytes=0-1,5-6"), R::Full);
        check(Some("items=0-1"), R::Full);
        check(Some("bytes=x-y"), R::Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), R::Unsatisfiable);
    }

    #[test]
    fn s3_urls() {
        use super::parse_s3_url;
        let (bucket, prefix) = parse_s3_url("s3://fleet-artifacts/prod/eu/").unwrap();
        assert_eq!(bucket, "fleet-artifacts");
        assert_eq!(prefix.unwrap().as_ref(), "prod/eu");
        assert_eq!(parse_s3_url("s3://fleet.artifacts").unwrap().1, None);
        for bad in [
            "fleet-artifacts",
            "https://fleet-artifacts/x",
            "s3://",
            "s3://ab",
            "s3://Upper-Case",
            "s3://under_score/x",
            "s3://fleet-artifacts/../etc",
            "s3://fleet-artifacts/a//b",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_s3_secret_is_never_printed() {
        let settings = super::S3Settings {
            url: "s3://fleet-artifacts".into(),
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-very-secret".into()),
            ..Default::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
