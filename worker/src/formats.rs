//! What an image is, how large it may be, and why it cannot be labeled: the
//! vocabulary shared by the conversion ([`crate::convert`]) and the HEIF and
//! AVIF decoder ([`crate::heif`]), which both import it and not each other.
//! `crate::convert` re-exports every item, its public home.

use std::fmt;

const MIB: u64 = 1024 * 1024;

/// An image format, as recognised from the bytes by
/// [`crate::convert::sniff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG.
    Png,
    /// GIF (87a or 89a).
    Gif,
    /// WebP (lossy, lossless or animated).
    WebP,
    /// TIFF (classic or BigTIFF, either byte order).
    Tiff,
    /// Windows bitmap.
    Bmp,
    /// HEIC/HEIF (ISO-BMFF with a HEIF brand), as iPhones write by default.
    Heif,
    /// AVIF (ISO-BMFF with an AVIF brand).
    Avif,
}

impl Format {
    /// The format's usual name, for messages: "JPEG", "PNG", "GIF", "WebP",
    /// "TIFF", "BMP", "HEIC/HEIF", "AVIF".
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::WebP => "WebP",
            Format::Tiff => "TIFF",
            Format::Bmp => "BMP",
            Format::Heif => "HEIC/HEIF",
            Format::Avif => "AVIF",
        }
    }

    /// The `image` crate's decoder for this format; `None` for HEIF and
    /// AVIF, which [`crate::heif`] decodes.
    pub(crate) fn decoder_format(self) -> Option<image::ImageFormat> {
        match self {
            Format::Jpeg => Some(image::ImageFormat::Jpeg),
            Format::Png => Some(image::ImageFormat::Png),
            Format::Gif => Some(image::ImageFormat::Gif),
            Format::WebP => Some(image::ImageFormat::WebP),
            Format::Tiff => Some(image::ImageFormat::Tiff),
            Format::Bmp => Some(image::ImageFormat::Bmp),
            Format::Heif | Format::Avif => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How large an image [`crate::convert::convert`] agrees to decode.
///
/// The defaults take any real photograph (a 48-megapixel phone photo is
/// 8064×6048; a 100-megapixel medium-format one 11648×8736) and refuse
/// bombs and absurd canvases:
///
/// - `max_side` 30,000 pixels: a panorama of 30,000×4,000 passes;
/// - `max_pixels` 120 megapixels: 360 MB as 8-bit RGB, 480 MB as RGBA;
/// - `max_alloc` 1 GiB: the decoded buffer (a 120-megapixel RGBA image at 16
///   bits per channel, 960 MB, still fits) plus the decoder's own buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels (width × height) a decoded image may have.
    pub max_pixels: u64,
    /// The longest side, in pixels, a decoded image may have.
    pub max_side: u32,
    /// The most bytes the decoder may allocate for one image, its decoded
    /// pixels included.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 120_000_000,
            max_side: 30_000,
            max_alloc: 1024 * 1024 * 1024,
        }
    }
}

/// Which of the [`Limits`] a canvas exceeds, for [`ConvertError::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// [`Limits::max_side`], in pixels.
    Side(u32),
    /// [`Limits::max_pixels`].
    Pixels(u64),
    /// [`Limits::max_alloc`], in bytes.
    Memory(u64),
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SizeLimit::Side(px) => write!(f, "{px}-pixel side limit"),
            SizeLimit::Pixels(px) if px % 1_000_000 == 0 => {
                write!(f, "{}-megapixel limit", px / 1_000_000)
            }
            SizeLimit::Pixels(px) => write!(f, "{px}-pixel limit"),
            SizeLimit::Memory(bytes) if bytes >= MIB => {
                write!(f, "{} MiB memory limit", bytes / MIB)
            }
            SizeLimit::Memory(bytes) => write!(f, "{bytes}-byte memory limit"),
        }
    }
}

/// Why an image cannot be labeled. The `Display` text is written for a
/// person: it becomes the image's FAILED or SKIPPED reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The bytes are no image format this module knows.
    #[error("not an image: the bytes are not JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC or AVIF")]
    NotAnImage,
    /// A known image format this worker cannot decode: HEIF or AVIF
    /// without a usable libheif ([`crate::heif`]).
    #[error("{format} images cannot be decoded by this worker: {why}")]
    Unsupported {
        /// The sniffed format.
        format: Format,
        /// Why not, naming what is missing.
        why: String,
    },
    /// The header declares a canvas beyond [`Limits`]; nothing was decoded.
    #[error("declares a {width}×{height} canvas, more than the {limit}: refused before decoding")]
    TooLarge {
        /// Declared width, in pixels.
        width: u32,
        /// Declared height, in pixels.
        height: u32,
        /// The limit it exceeds.
        limit: SizeLimit,
    },
    /// The decoder failed: a truncated or corrupt file, or a variant of the
    /// format the decoder does not read.
    #[error("could not decode this {format}: {detail}")]
    Undecodable {
        /// The sniffed format.
        format: Format,
        /// What went wrong, in words, with the decoder's message.
        detail: String,
    },
    /// The decoded image could not be encoded as a JPEG of at most 5 MB.
    #[error("could not encode the converted image as a JPEG: {0}")]
    Encode(String),
}

impl ConvertError {
    /// The class of the FAILED reason this error becomes.
    pub fn class(&self) -> crate::error::ReasonClass {
        use crate::error::ReasonClass;
        match self {
            ConvertError::NotAnImage => ReasonClass::NotAnImage,
            ConvertError::TooLarge { .. } => ReasonClass::TooLarge,
            ConvertError::Undecodable { .. } => ReasonClass::Unreadable,
            ConvertError::Unsupported { .. } | ConvertError::Encode(_) => ReasonClass::Other,
        }
    }

    /// The FAILED reason and its class.
    pub fn refusal(&self) -> crate::error::Refusal {
        crate::error::Refusal::new(self.class(), self.to_string())
    }
}

/// The limit a `width`×`height` canvas exceeds, if any: the pixel limit
/// first, since it says the most about a bomb, then the side limit.
pub(crate) fn exceeded_limit(limits: &Limits, width: u32, height: u32) -> Option<SizeLimit> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        Some(SizeLimit::Pixels(limits.max_pixels))
    } else if width.max(height) > limits.max_side {
        Some(SizeLimit::Side(limits.max_side))
    } else {
        None
    }
}
