//! `s3://BUCKET/KEY` addresses, checked before any AWS call.

use std::fmt;
use std::str::FromStr;

/// A bucket and a key (or key prefix), possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    /// Bucket name.
    pub bucket: String,
    /// Key or prefix, exactly as stored (not URL-encoded); may be empty.
    pub key: String,
}

impl S3Uri {
    /// The key, or an error saying an object (not a bucket) was expected.
    pub fn object_key(&self) -> Result<&str, String> {
        if self.key.is_empty() {
            Err(format!("{self} names a bucket; expected s3://BUCKET/KEY"))
        } else {
            Ok(&self.key)
        }
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl FromStr for S3Uri {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let rest = raw
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{raw:?} is not an S3 URI; expected s3://BUCKET/KEY"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|why| format!("{raw:?}: bucket {bucket:?} {why}"))?;
        if key.len() > 1024 {
            return Err(format!("{raw:?}: keys are at most 1024 bytes"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// S3's bucket naming rules (general purpose buckets).
fn check_bucket(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is missing");
    }
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may hold only lower-case letters, digits, dots and hyphens");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[name.len() - 1]) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent dots");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(raw: &str) -> Result<S3Uri, String> {
        raw.parse()
    }

    #[test]
    fn splits_bucket_and_key_at_the_first_slash() {
        let u = uri("s3://photos/holiday/beach day+1.jpg").unwrap();
        assert_eq!(u.bucket, "photos");
        assert_eq!(u.key, "holiday/beach day+1.jpg");
        assert_eq!(u.to_string(), "s3://photos/holiday/beach day+1.jpg");
        assert_eq!(uri("s3://photos").unwrap().key, "");
        assert_eq!(uri("s3://photos/").unwrap().key, "");
    }

    #[test]
    fn keys_are_taken_literally() {
        // Percent signs and plus signs are part of the key, not an encoding.
        assert_eq!(uri("s3://photos/a%20b+c").unwrap().key, "a%20b+c");
    }

    #[test]
    fn rejects_what_s3_would() {
        for bad in [
            "photos/a.jpg",
            "https://photos.s3.amazonaws.com/a.jpg",
            "s3://",
            "s3:///a.jpg",
            "s3://ab/a.jpg",
            "s3://Photos/a.jpg",
            "s3://-photos/a.jpg",
            "s3://photos-/a.jpg",
            "s3://pho..tos/a.jpg",
            "s3://pho_tos/a.jpg",
        ] {
            let err = uri(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(err.contains(bad), "error names the input: {err}");
        }
        let long = format!("s3://photos/{}", "k".repeat(1025));
        assert!(uri(&long).is_err());
    }

    #[test]
    fn object_commands_need_a_key() {
        assert!(uri("s3://photos").unwrap().object_key().is_err());
        assert_eq!(uri("s3://photos/a.jpg").unwrap().object_key(), Ok("a.jpg"));
    }
}
