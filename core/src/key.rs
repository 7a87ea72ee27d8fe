//! Object keys as S3 writes them into event notifications, and back.
//!
//! S3 form-URL-encodes keys in notifications: a space becomes `+`, a literal
//! `+` becomes `%2B`, and every byte outside a small safe set becomes `%XX` of
//! its UTF-8 encoding. `url_decoded_key` in `aws_lambda_events` is never
//! filled by AWS, so decoding is ours to do, exactly.

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Largest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why an event's key could not be turned back into the object's true key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("key {0:?} has a malformed percent-escape")]
    MalformedEscape(String),
    /// The decoded bytes are not UTF-8.
    #[error("key {0:?} does not decode to UTF-8")]
    NotUtf8(String),
    /// Empty keys are not valid S3 keys.
    #[error("key is empty")]
    Empty,
    /// Longer than S3's 1,024-byte limit.
    #[error("key is {0} bytes long; S3 keys are at most 1024")]
    TooLong(usize),
}

/// Decodes a key from an S3 event notification into the object's true key.
///
/// `+` is a space and `%XX` escapes are UTF-8 bytes; everything else is taken
/// as is. Stricter than a lenient URL decoder on purpose: a malformed escape is
/// an error, never a silently different key.
pub fn decode_event_key(encoded: &str) -> Result<String, KeyError> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(KeyError::MalformedEscape(encoded.to_owned())),
                }
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    let key = String::from_utf8(out).map_err(|_| KeyError::NotUtf8(encoded.to_owned()))?;
    validate_key(&key)?;
    Ok(key)
}

/// Checks the limits S3 itself puts on keys.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    Ok(())
}

/// Bytes S3 leaves unescaped in event keys, besides ASCII letters and digits.
const EVENT_KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b' ')
    .remove(b'/');

/// [`EVENT_KEY_KEEP`] without `/`, as S3 emulators encode keys.
const EVENT_KEY_KEEP_NO_SLASH: &AsciiSet = &EVENT_KEY_KEEP.add(b'/');

/// Encodes a key the way S3 writes it into event notifications.
///
/// Real S3 keeps `/` as is; `encode_slash` reproduces emulators that escape it
/// as `%2F`. Used by tests and local tooling to produce realistic events.
pub fn encode_event_key(key: &str, encode_slash: bool) -> String {
    let set = if encode_slash {
        EVENT_KEY_KEEP_NO_SLASH
    } else {
        EVENT_KEY_KEEP
    };
    percent_encode(key.as_bytes(), set)
        .to_string()
        .replace(' ', "+")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_plus_as_space_in_keys() {
        assert_eq!(decode_event_key("a+b.jpg").unwrap(), "a b.jpg");
    }

    #[test]
    fn decodes_escaped_plus_as_plus() {
        assert_eq!(decode_event_key("1%2B1%3D2.png").unwrap(), "1+1=2.png");
    }

    #[test]
    fn decodes_percent_escapes_as_utf8() {
        assert_eq!(
            decode_event_key("%D1%84%D0%BE%D1%82%D0%BE/caf%C3%A9.JPG").unwrap(),
            "фото/café.JPG"
        );
    }

    #[test]
    fn decodes_escaped_slash_the_way_emulators_send_it() {
        assert_eq!(decode_event_key("a%2Fb.png").unwrap(), "a/b.png");
    }

    #[test]
    fn keeps_a_literal_percent_that_was_escaped() {
        assert_eq!(
            decode_event_key("100%25+real.jpeg").unwrap(),
            "100% real.jpeg"
        );
    }

    #[test]
    fn rejects_a_truncated_escape() {
        assert!(matches!(
            decode_event_key("bad%2.jpg"),
            Err(KeyError::MalformedEscape(_))
        ));
        assert!(matches!(
            decode_event_key("bad%"),
            Err(KeyError::MalformedEscape(_))
        ));
    }

    #[test]
    fn rejects_escapes_that_are_not_utf8() {
        assert!(matches!(
            decode_event_key("%FF.jpg"),
            Err(KeyError::NotUtf8(_))
        ));
    }

    #[test]
    fn rejects_keys_over_1024_bytes() {
        let long = "a".repeat(1025);
        assert_eq!(decode_event_key(&long), Err(KeyError::TooLong(1025)));
        assert!(decode_event_key(&"a".repeat(1024)).is_ok());
    }

    #[test]
    fn encodes_like_s3_does() {
        assert_eq!(
            encode_event_key("holiday/beach day+sun.jpg", false),
            "holiday/beach+day%2Bsun.jpg"
        );
        assert_eq!(encode_event_key("a/b c", true), "a%2Fb+c");
    }

    fn any_valid_key() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 1..300)
            .prop_map(|chars| {
                let mut key = String::new();
                for c in chars {
                    if key.len() + c.len_utf8() > MAX_KEY_BYTES {
                        break;
                    }
                    key.push(c);
                }
                key
            })
            .prop_filter("S3 keys are not empty", |k| !k.is_empty())
    }

    proptest! {
        #[test]
        fn any_valid_key_survives_s3_encoding_and_our_decoding(key in any_valid_key(), slash in any::<bool>()) {
            let encoded = encode_event_key(&key, slash);
            prop_assert_eq!(decode_event_key(&encoded).unwrap(), key);
        }

        #[test]
        fn keys_of_awkward_ascii_survive(key in "[ +%=&/?#a-z0-9]{1,64}") {
            prop_assert_eq!(decode_event_key(&encode_event_key(&key, false)).unwrap(), key);
        }

        #[test]
        fn whatever_decodes_round_trips(raw in "[ -~]{0,200}") {
            if let Ok(key) = decode_event_key(&raw) {
                prop_assert_eq!(decode_event_key(&encode_event_key(&key, false)).unwrap(), key);
            }
        }
    }
}
