//! What Rekognition reads for an image: the object itself when Rekognition
//! can read it, or a conversion made by the worker ([`crate::convert`]).
//!
//! The format is decided from the object's bytes, never its name: a ranged
//! GET reads the first [`HEAD_BYTES`], [`convert::sniff`] and
//! [`convert::header_dimensions`] read them, and [`convert::route`] decides.
//! JPEG and PNG within Rekognition's limits go to it as an `S3Object` (no
//! download). Anything else decodable, and JPEG/PNG over 15 MB or outside
//! 80–10,000 px, is downloaded whole (at most [`ConvertSettings::max_bytes`]),
//! converted off the async runtime, and sent as `Bytes`.
//!
//! Memory: at most [`ConvertSettings::concurrency`] conversions run at once,
//! each holding the object's bytes, its decoded pixels (3–4 bytes each,
//! capped by [`convert::Limits`]) and the resized copy; the other images in
//! flight only hold their first 64 KiB.

use crate::convert::{self, Limits, Route, HEAD_BYTES};
use crate::error::{ReasonClass, Refusal, WorkerError};
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types::{Image, S3Object};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use labeler_core::reuse::Content;
use labeler_core::ImageRef;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// How conversions are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertSettings {
    /// Conversions at once (each may hold hundreds of MB).
    pub concurrency: usize,
    /// Largest object downloaded to convert; larger ones end FAILED.
    pub max_bytes: u64,
}

impl Default for ConvertSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

/// The conversion slots of one run.
#[derive(Debug)]
pub struct Conversions {
    permits: Semaphore,
    settings: ConvertSettings,
    limits: Limits,
}

impl Conversions {
    /// Slots for `settings`.
    pub fn new(settings: ConvertSettings) -> Self {
        Self {
            permits: Semaphore::new(settings.concurrency.max(1)),
            settings,
            limits: Limits::default(),
        }
    }
}

/// What to send to DetectLabels, or why not to.
#[derive(Debug)]
pub enum Prepared {
    /// Call DetectLabels with this image.
    Ready {
        /// The `Image` of the request.
        image: Image,
        /// What was done to the object, when it was converted.
        conversion: Option<String>,
    },
    /// The object cannot be labeled: the reason, in plain words, to record
    /// the image FAILED with, and its class.
    Refused(Refusal),
}

/// Decides how Rekognition reads `image`, converting it if needed.
pub async fn prepare(
    s3: &aws_sdk_s3::Client,
    image: &ImageRef,
    conversions: &Conversions,
) -> Result<Prepared, WorkerError> {
    let head = match read(s3, image, Some(HEAD_BYTES)).await? {
        Ok(head) => head,
        Err(reason) => return Ok(Prepared::Refused(reason)),
    };
    let size = head.total.or(image.size).unwrap_or(head.bytes.len() as u64);
    let format = convert::sniff(&head.bytes);
    match convert::route(format, size, convert::header_dimensions(&head.bytes)) {
        Route::Direct => {
            let object = S3Object::builder()
                .bucket(&image.bucket)
                .name(&image.key)
                .set_version(image.version_id.clone())
                .build();
            Ok(Prepared::Ready {
                image: Image::builder().s3_object(object).build(),
                conversion: None,
            })
        }
        Route::Refuse(e) => Ok(Prepared::Refused(e.refusal())),
        Route::Convert => {
            let max = conversions.settings.max_bytes;
            if size > max {
                return Ok(Prepared::Refused(Refusal::new(
                    ReasonClass::TooLarge,
                    format!(
                        "object is {size} bytes; the worker converts images of at most {max} bytes"
                    ),
                )));
            }
            let _slot = conversions
                .permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let bytes = if head.bytes.len() as u64 >= size {
                head.bytes
            } else {
                match read(s3, image, None).await? {
                    Ok(whole) => whole.bytes,
                    Err(reason) => return Ok(Prepared::Refused(reason)),
                }
            };
            let limits = conversions.limits;
            let converted = tokio::task::spawn_blocking(move || convert::convert(&bytes, &limits))
                .await
                .map_err(|e| WorkerError::ImageRead {
                    bucket: image.bucket.clone(),
                    key: image.key.clone(),
                    message: format!("conversion did not finish: {e}"),
                })?;
            Ok(match converted {
                Ok(c) => {
                    let note = c.note();
                    Prepared::Ready {
                        image: Image::builder().bytes(Blob::new(c.jpeg)).build(),
                        conversion: Some(note),
                    }
                }
                Err(e) => Prepared::Refused(e.refusal()),
            })
        }
    }
}

/// The whole object (its recorded version), or why it cannot be read for
/// good: what the local model classifies.
pub(crate) async fn whole(
    s3: &aws_sdk_s3::Client,
    image: &ImageRef,
) -> Result<Result<Vec<u8>, Refusal>, WorkerError> {
    Ok(read(s3, image, None).await?.map(|r| r.bytes))
}

/// Bytes read from the object.
struct Read {
    bytes: Vec<u8>,
    /// The object's whole size, from `Content-Range` of a ranged read.
    total: Option<u64>,
}

/// Reads the object (its first `limit` bytes when given). `Ok(Err(why))`
/// when the object cannot be read for good (gone, forbidden, empty).
async fn read(
    s3: &aws_sdk_s3::Client,
    image: &ImageRef,
    limit: Option<usize>,
) -> Result<Result<Read, Refusal>, WorkerError> {
    let request = s3
        .get_object()
        .bucket(&image.bucket)
        .key(&image.key)
        .set_version_id(image.version_id.clone())
        .set_range(limit.map(|n| format!("bytes=0-{}", n.saturating_sub(1))));
    let output = match request.send().await {
        Ok(output) => output,
        Err(e) => {
            let code = e.as_service_error().and_then(|se| se.code()).unwrap_or("");
            let message = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            return match code {
                "NoSuchKey" | "NoSuchVersion" | "NoSuchBucket" | "AccessDenied" => Ok(Err(
                    Refusal::new(ReasonClass::Unreadable, format!("the object cannot be read ({code}): it was deleted, or the worker may not read it")),
                )),
                "InvalidRange" => Ok(Err(Refusal::new(ReasonClass::NotAnImage, "object is empty (0 bytes)"))),
                _ if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(Err(
                    Refusal::new(ReasonClass::Unreadable, "the object cannot be read (NoSuchKey): it was deleted"),
                )),
                _ => Err(WorkerError::ImageRead {
                    bucket: image.bucket.clone(),
                    key: image.key.clone(),
                    message,
                }),
            };
        }
    };
    let total = output
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse().ok());
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|e| WorkerError::ImageRead {
            bucket: image.bucket.clone(),
            key: image.key.clone(),
            message: e.to_string(),
        })?
        .into_bytes()
        .to_vec();
    Ok(Ok(Read { bytes, total }))
}

/// The bytes a content lookup is about: their identity, and the ETag of the
/// read that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digested {
    pub(crate) content: Content,
    etag: Option<String>,
}

/// The SHA-256 and size of `image`'s bytes (of its pinned version, when it
/// has one). S3's own full-object `ChecksumSHA256` when the object was
/// uploaded with one — S3 checked it against the bytes, and the body is not
/// read; otherwise the whole object is read once, streamed through SHA-256
/// and dropped (memory stays at one chunk). A composite checksum
/// (multipart, `…-N`) is not a digest of the bytes and is not used.
pub(crate) async fn digest(
    s3: &aws_sdk_s3::Client,
    image: &ImageRef,
) -> Result<Digested, WorkerError> {
    let failed = |message: String| WorkerError::ImageRead {
        bucket: image.bucket.clone(),
        key: image.key.clone(),
        message,
    };
    let output = s3
        .get_object()
        .bucket(&image.bucket)
        .key(&image.key)
        .set_version_id(image.version_id.clone())
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
    let etag = output.e_tag().map(str::to_owned);
    let stated = full_object_sha256(output.checksum_sha256(), output.checksum_type());
    if let (Some(sha256), Some(size)) = (stated, output.content_length()) {
        let size = u64::try_from(size).map_err(|_| failed("negative Content-Length".into()))?;
        return Ok(Digested {
            content: Content { sha256, size },
            etag,
        });
    }
    let mut body = output.body;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| failed(e.to_string()))? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok(Digested {
        content: Content {
            sha256: hasher.finalize().into(),
            size,
        },
        etag,
    })
}

/// The 32 bytes of a full-object SHA-256 checksum as S3 states it (base64),
/// or `None` for a composite one (a `-N` suffix, or a type other than
/// `FULL_OBJECT`) or a malformed one.
fn full_object_sha256(stated: Option<&str>, kind: Option<&ChecksumType>) -> Option<[u8; 32]> {
    if kind.is_some_and(|k| *k != ChecksumType::FullObject) {
        return None;
    }
    let bytes = aws_smithy_types::base64::decode(stated?).ok()?;
    bytes.try_into().ok()
}

/// Whether the object DetectLabels just read still holds the bytes `read`
/// hashed, so that its labels may be remembered under their content key
/// ([`labeler_core::reuse`]).
///
/// A pinned version cannot change. Otherwise S3 is asked with `If-Match`
/// on the ETag of the read that was hashed: an object overwritten (or
/// deleted) since answers 412 (or 404), and its labels — maybe of other
/// bytes — are kept off the hashed bytes' key. Any doubt (another error, no
/// ETag) also answers `false`: the entry is an optimisation, a record never
/// depends on it. Left open: an overwrite and a second overwrite back to
/// the hashed bytes, both between the hash and Rekognition's read.
pub(crate) async fn unchanged(s3: &aws_sdk_s3::Client, image: &ImageRef, read: &Digested) -> bool {
    if image.version_id.is_some() {
        return true;
    }
    let Some(etag) = read.etag.as_deref() else {
        return false;
    };
    s3.head_object()
        .bucket(&image.bucket)
        .key(&image.key)
        .if_match(format!("\"{}\"", etag.trim_matches('"')))
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_object_sha256_is_the_digest_and_a_composite_one_is_not() {
        // SHA-256 of "hello".
        let hello = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        let sum = full_object_sha256(Some(hello), Some(&ChecksumType::FullObject)).unwrap();
        assert_eq!(sum[..4], [0x2c, 0xf2, 0x4d, 0xba]);
        assert_eq!(full_object_sha256(Some(hello), None), Some(sum));
        assert_eq!(
            full_object_sha256(Some(hello), Some(&ChecksumType::Composite)),
            None
        );
        assert_eq!(full_object_sha256(Some(&format!("{hello}-3")), None), None);
        assert_eq!(full_object_sha256(Some("AAAA"), None), None);
        assert_eq!(full_object_sha256(None, None), None);
    }
}
