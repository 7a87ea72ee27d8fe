//! Turning any image Rekognition refuses into one it reads.
//!
//! Amazon Rekognition `DetectLabels` reads JPEG and PNG only, at most 15 MB
//! from S3 (as an `S3Object`), at most 5 MB as raw bytes (`Image.Bytes`), and
//! each side must be 80 to 10,000 pixels. This module decides, from the first
//! bytes of an object and its size, what to do with it ([`route`]), and
//! converts what needs converting into a JPEG that meets every limit
//! ([`convert`]). It does no I/O: the caller reads the bytes.
//!
//! The intended flow, for one S3 object:
//! 1. read its first [`HEAD_BYTES`] bytes with a ranged GET;
//! 2. [`sniff`] the format from its magic numbers (never from the file name)
//!    and read its [`header_dimensions`];
//! 3. [`route`]: [`Route::Direct`] passes the object to Rekognition as an
//!    `S3Object`, nothing downloaded; [`Route::Convert`] downloads the whole
//!    object and [`convert`]s it, then passes the JPEG as `Image.Bytes`
//!    ([`Converted::note`] says what was done); [`Route::Refuse`] records the
//!    image with the error's text as its reason.
//!
//! [`convert`] decodes with the pure-Rust codecs of the `image` crate (JPEG,
//! PNG, GIF, WebP, TIFF, BMP) and with libheif, loaded at run time, for
//! HEIC/HEIF and AVIF ([`crate::heif`]; without the library those end FAILED
//! with a reason naming it). It takes the first frame of an animation (the
//! primary image of a HEIF file), applies the EXIF orientation (the file's
//! own rotation and mirroring for HEIF), flattens transparency onto white, converts any colour
//! type (CMYK JPEG, 16-bit, grey, palette) to 8-bit RGB, scales so both sides
//! are within 80..=10,000 pixels, and encodes a JPEG of at most 5 MB (quality
//! 90, then lower quality and smaller sizes until it fits). Any scaling is
//! fine: Rekognition returns bounding boxes as ratios of the image's sides.
//!
//! # Untrusted input
//!
//! Every input is treated as hostile. No input makes this module panic: the
//! code here does not, and a panic inside a third-party decoder is caught
//! and reported as [`ConvertError::Undecodable`] rather than ending the
//! worker (whose exit code 101 Batch would not retry). A *decompression bomb* (a small file that declares a gigantic canvas) is
//! refused from its header, before its pixels are allocated: the decoder gets
//! [`image::Limits`] (the side limit and the memory limit of [`Limits`]) and
//! the canvas is checked against the pixel and memory limits before decoding.
//!
//! # Memory
//!
//! The peak of one conversion is about the decoded pixels at 3–4 bytes each
//! (8-bit RGB or RGBA, flattened in place), plus the resized copy (at most
//! 10,000×10,000 RGB, usually far less), a rotated copy when the EXIF
//! orientation turns the image, and the encoded JPEG (a few MB). Rarer
//! images take more: a 16-bit one is decoded at 6–8 bytes a pixel, then
//! converted to an 8-bit copy. With the default [`Limits`], a 48-megapixel
//! JPEG photo peaks near 150 MB (300 MB when it must be rotated) and the
//! largest accepted image (120 megapixels) near 1 GB. A HEIF or AVIF image
//! takes about 9 bytes a pixel while libheif decodes it (its planes, its RGB
//! image and the copy made here): about 400 MB for 48 megapixels, measured
//! by `make bench`. [`Limits::max_alloc`]
//! bounds the decoded buffer of one image; the caller bounds how many
//! conversions run at once, so that their sum fits the container's memory.

use std::borrow::Cow;
use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::error::LimitErrorKind;
use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageError, ImageReader, RgbImage};

use crate::formats::exceeded_limit;
pub use crate::formats::{ConvertError, Format, Limits, SizeLimit};

/// How many bytes of the start of an object [`sniff`] and
/// [`header_dimensions`] are meant to get: 64 KiB, enough for the header of
/// every supported format unless large metadata comes first (then
/// [`header_dimensions`] says `None` and the object is converted).
pub const HEAD_BYTES: usize = 64 * 1024;

/// The largest object Rekognition reads from S3: 15 MB.
pub(crate) const MAX_S3_OBJECT_BYTES: u64 = 15 * MIB;
/// The largest image Rekognition takes as raw bytes: 5 MB.
pub(crate) const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// The shortest side Rekognition accepts, in pixels.
pub(crate) const MIN_SIDE: u32 = 80;
/// The longest side Rekognition accepts, in pixels.
pub(crate) const MAX_SIDE: u32 = 10_000;

const MIB: u64 = 1024 * 1024;

/// JPEG quality of the first encoding attempt.
const FIRST_QUALITY: u8 = 90;
/// JPEG quality once the first attempt is over 5 MB.
const SECOND_QUALITY: u8 = 75;
/// The lowest JPEG quality tried (only for images that cannot shrink).
const MIN_QUALITY: u8 = 30;
/// Bounds the encode loop; it normally ends within three attempts.
const MAX_ENCODE_ATTEMPTS: usize = 12;

/// The format of an image from its first bytes (its magic numbers), or
/// `None` when the bytes are no image this module knows. The file name and
/// the S3 `Content-Type` play no part: a JPEG named `.png` is a JPEG.
///
/// 32 bytes are enough for every format but an ISO-BMFF file (HEIF, AVIF)
/// that lists its brand late in its `ftyp` box; [`HEAD_BYTES`] is plenty.
pub fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Format::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Some(Format::Gif);
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        return Some(Format::WebP);
    }
    // Classic TIFF (42) and BigTIFF (43), little- and big-endian.
    if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        return Some(Format::Tiff);
    }
    if head.starts_with(b"BM") {
        return Some(Format::Bmp);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return sniff_iso_bmff(head);
    }
    None
}

/// HEIF or AVIF from an ISO-BMFF `ftyp` box: its major brand and compatible
/// brands. The AVIF brands are looked for first, since an AVIF file also
/// lists the generic `mif1`.
fn sniff_iso_bmff(head: &[u8]) -> Option<Format> {
    const AVIF: [&[u8; 4]; 2] = [b"avif", b"avis"];
    const HEIF: [&[u8; 4]; 8] = [
        b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis",
    ];
    // The box's size; 0 means "to the end of the file".
    let declared = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = match declared {
        0 => head.len(),
        n => n.min(head.len()),
    };
    // The major brand at 8..12, the minor version at 12..16, then the
    // compatible brands.
    let major = head.get(8..12).into_iter();
    let compatible = head.get(16..end).unwrap_or_default().chunks_exact(4);
    let brands: Vec<&[u8]> = major.chain(compatible).collect();
    let has = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| &s[..] == *b));
    if has(&AVIF) {
        Some(Format::Avif)
    } else if has(&HEIF) {
        Some(Format::Heif)
    } else {
        None
    }
}

/// The width and height an image declares in its header, read from a prefix
/// of the file (the worker reads the first [`HEAD_BYTES`]). `None` when the
/// prefix does not tell: an unknown or undecodable format, a header cut
/// short, or metadata larger than the prefix before the dimensions (a TIFF
/// may keep them at its end). The caller then downloads the whole object and
/// converts it, which is always safe.
///
/// These are the stored dimensions, before any EXIF orientation: Rekognition's
/// limits are the same for both sides, so a rotation does not change them.
pub fn header_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let format = sniff(head)?.decoder_format()?;
    // Reading a header allocates little (at most a row of pixels, for PNG),
    // within the reader's default memory limit, whatever canvas it declares.
    ImageReader::with_format(Cursor::new(head), format)
        .into_dimensions()
        .ok()
}

/// What to do with an object, from [`route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Rekognition reads it as it is, from S3: a JPEG or PNG within every
    /// limit. Nothing is downloaded.
    Direct,
    /// Download it and [`convert`] it, then send the JPEG as raw bytes.
    Convert,
    /// Neither: record the image with the error's text as its reason.
    Refuse(ConvertError),
}

/// Decides what to do with an object from its sniffed format, its size in
/// bytes and the dimensions its header declares (`None` when unknown):
///
/// - JPEG or PNG of at most 15 MB whose sides are both within 80..=10,000
///   pixels: [`Route::Direct`];
/// - any other JPEG or PNG (too many bytes, too large or too small in
///   pixels, dimensions unknown), and every GIF, WebP, TIFF, BMP, HEIC/HEIF
///   and AVIF: [`Route::Convert`];
/// - anything else: refused as [`ConvertError::NotAnImage`].
pub fn route(format: Option<Format>, object_size: u64, dims: Option<(u32, u32)>) -> Route {
    let Some(format) = format else {
        return Route::Refuse(ConvertError::NotAnImage);
    };
    match format {
        Format::Jpeg | Format::Png => {
            let sides_ok = dims.is_some_and(|(w, h)| {
                (MIN_SIDE..=MAX_SIDE).contains(&w) && (MIN_SIDE..=MAX_SIDE).contains(&h)
            });
            if object_size <= MAX_S3_OBJECT_BYTES && sides_ok {
                Route::Direct
            } else {
                Route::Convert
            }
        }
        Format::Gif | Format::WebP | Format::Tiff | Format::Bmp | Format::Heif | Format::Avif => {
            Route::Convert
        }
    }
}

/// A converted image: a JPEG Rekognition accepts as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The JPEG: at most 5 MB, both sides within 80..=10,000 pixels.
    pub jpeg: Vec<u8>,
    /// The format it was converted from.
    pub from: Format,
    /// Width and height as stored in the source, before any orientation.
    pub original: (u32, u32),
    /// Width and height of [`Converted::jpeg`], upright.
    pub output: (u32, u32),
    /// The JPEG quality it was encoded at: 90, or less when that was over
    /// 5 MB.
    pub quality: u8,
    /// The source's EXIF orientation (for HEIF and AVIF, the file's quarter
    /// turn) was applied: it was not stored upright.
    pub orientation_applied: bool,
    /// The source is an animation (animated GIF, WebP or PNG) and the JPEG is
    /// its first frame.
    pub first_frame_of_animation: bool,
}

impl Converted {
    /// What was done, for logs and the image's record, e.g. `"converted from
    /// WebP, 4032×3024 → 3024×2268"`, followed by `", EXIF orientation
    /// applied"` (`", rotation applied"` for HEIF and AVIF) and `", first frame of an animation"` when they apply.
    pub fn note(&self) -> String {
        let (ow, oh) = self.original;
        let (w, h) = self.output;
        let mut note = format!("converted from {}, {ow}×{oh} → {w}×{h}", self.from);
        if self.orientation_applied {
            note.push_str(match self.from {
                Format::Heif | Format::Avif => ", rotation applied",
                _ => ", EXIF orientation applied",
            });
        }
        if self.first_frame_of_animation {
            note.push_str(", first frame of an animation");
        }
        note
    }
}

/// Converts an image (the whole file) into a JPEG Rekognition accepts as raw
/// bytes: at most 5 MB, both sides within 80..=10,000 pixels, upright (EXIF
/// orientation applied), 8-bit RGB with any transparency flattened onto
/// white, the first frame of an animation.
///
/// A canvas beyond `limits` is refused from its header, before its pixels are
/// allocated ([`ConvertError::TooLarge`]). Never panics, whatever the bytes.
pub fn convert(bytes: &[u8], limits: &Limits) -> Result<Converted, ConvertError> {
    let from = sniff(bytes).ok_or(ConvertError::NotAnImage)?;
    let Some(format) = from.decoder_format() else {
        let decoded = crate::heif::decode(bytes, from, limits)?;
        let mut converted = finish(
            decoded.image,
            from,
            decoded.stored,
            Orientation::NoTransforms,
            false,
        )?;
        converted.orientation_applied = decoded.rotated;
        return Ok(converted);
    };
    // Only shared references go in, and nothing is left half-updated.
    std::panic::catch_unwind(|| decode_and_encode(bytes, from, format, limits)).unwrap_or_else(
        |_| {
            Err(ConvertError::Undecodable {
                format: from,
                detail: "it is corrupt (the decoder failed on it)".into(),
            })
        },
    )
}

/// [`convert`] once the format is known to be decodable.
fn decode_and_encode(
    bytes: &[u8],
    from: Format,
    format: image::ImageFormat,
    limits: &Limits,
) -> Result<Converted, ConvertError> {
    let failed = |e: ImageError| undecodable(from, e);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(limits, limits.max_alloc));
    let mut decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        Err(ImageError::Limits(e)) if e.kind() == LimitErrorKind::DimensionError => {
            // Refused from the header: read the declared size for the message.
            return Err(match header_dimensions(bytes) {
                Some((width, height)) => ConvertError::TooLarge {
                    width,
                    height,
                    limit: exceeded_limit(limits, width, height)
                        .unwrap_or(SizeLimit::Side(limits.max_side)),
                },
                None => failed(ImageError::Limits(e)),
            });
        }
        Err(e) => return Err(failed(e)),
    };

    // The header is read, no pixel yet: check the canvas against the limits.
    let (width, height) = decoder.dimensions();
    let too_large = |limit| ConvertError::TooLarge {
        width,
        height,
        limit,
    };
    if let Some(limit) = exceeded_limit(limits, width, height) {
        return Err(too_large(limit));
    }
    let decoded_bytes = decoder.total_bytes();
    if decoded_bytes > limits.max_alloc {
        return Err(too_large(SizeLimit::Memory(limits.max_alloc)));
    }
    // As `ImageReader::decode` does: the decoded buffer counts against the
    // memory limit, and the decoder gets what is left for its own buffers.
    decoder
        .set_limits(decoder_limits(limits, limits.max_alloc - decoded_bytes))
        .map_err(failed)?;

    if from == Format::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder is lenient: it would paint the missing part grey.
        return Err(ConvertError::Undecodable {
            format: from,
            detail: "it is truncated (the data ends before the JPEG end-of-image marker)".into(),
        });
    }

    // A broken EXIF block is no reason to refuse an image: it stays as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let first_frame_of_animation = is_animated(from, bytes);
    // For GIF, WebP and APNG, a plain decode gives the first frame.
    let decoded = DynamicImage::from_decoder(decoder).map_err(failed)?;
    finish(
        decoded,
        from,
        (width, height),
        orientation,
        first_frame_of_animation,
    )
}

/// The rest of a conversion once decoded: flattened onto white, scaled to
/// fit, turned upright and encoded as a JPEG of at most 5 MB.
fn finish(
    decoded: DynamicImage,
    from: Format,
    original: (u32, u32),
    orientation: Orientation,
    first_frame_of_animation: bool,
) -> Result<Converted, ConvertError> {
    let rgb = fit(flatten_onto_white(decoded));
    let mut upright = DynamicImage::ImageRgb8(rgb);
    upright.apply_orientation(orientation);
    let upright = upright.into_rgb8();

    let encoded = encode_under_limit(&upright)?;
    Ok(Converted {
        jpeg: encoded.jpeg,
        from,
        original,
        output: encoded.size,
        quality: encoded.quality,
        orientation_applied: orientation != Orientation::NoTransforms,
        first_frame_of_animation,
    })
}

/// The `image` crate's limits from ours, with `max_alloc` bytes to allocate.
fn decoder_limits(limits: &Limits, max_alloc: u64) -> image::Limits {
    // `image::Limits` is non-exhaustive: start from its default.
    let mut decoder = image::Limits::default();
    decoder.max_image_width = Some(limits.max_side);
    decoder.max_image_height = Some(limits.max_side);
    decoder.max_alloc = Some(max_alloc);
    decoder
}

/// A decoder's error in words, for [`ConvertError::Undecodable`].
fn undecodable(format: Format, error: ImageError) -> ConvertError {
    let detail = match &error {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("it is truncated ({e})")
        }
        ImageError::Unsupported(e) => {
            format!("it uses a variant of the format this worker cannot read ({e})")
        }
        ImageError::Limits(e) => format!("it needs more memory than allowed ({e})"),
        e => format!("it is truncated or corrupt ({e})"),
    };
    ConvertError::Undecodable { format, detail }
}

/// 8-bit RGB, with any transparency composited onto white. An RGBA image
/// is flattened in its own buffer, with no second copy.
fn flatten_onto_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut samples = rgba.into_raw();
    let pixels = samples.len() / 4;
    // Pixel i moves from 4i to 3i: never past a pixel not yet read.
    for i in 0..pixels {
        let alpha = u32::from(samples[4 * i + 3]);
        for c in 0..3 {
            let value = u32::from(samples[4 * i + c]);
            // At most 255: a weighted mean of `value` and 255.
            samples[3 * i + c] = ((value * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        }
    }
    samples.truncate(3 * pixels);
    samples.shrink_to_fit();
    // The buffer holds exactly width × height RGB pixels.
    RgbImage::from_raw(width, height, samples).unwrap_or_else(|| RgbImage::new(width, height))
}

/// The size to scale a `width`×`height` image to so that both sides are
/// within 80..=10,000: down so the long side is at most 10,000, up so the
/// short side is at least 80, keeping the aspect ratio unless the long side
/// would then pass 10,000 (a 30,000×1 strip becomes 10,000×80).
pub(crate) fn fitted_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let long = w.max(h);
    let short = w.min(h);
    let down = (f64::from(MAX_SIDE) / long).min(1.0);
    let up = (f64::from(MIN_SIDE) / (short * down)).max(1.0);
    let scale = down * up;
    let side = |v: f64| ((v * scale).round() as u32).clamp(MIN_SIDE, MAX_SIDE);
    (side(w), side(h))
}

/// The image scaled to [`fitted_size`], or itself when it already fits.
fn fit(image: RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let (tw, th) = fitted_size(w, h);
    if (tw, th) == (w, h) {
        return image;
    }
    resize(&image, tw, th)
}

/// Scales an image. Shrinking uses area averaging (`imageops::thumbnail`):
/// fast, and no intermediate buffer, where `imageops::resize` would allocate
/// the source width × the target height in 16-byte float pixels (1.6 GB for a
/// 120-megapixel source). Enlarging (only images with a side under 80 pixels)
/// uses a triangle filter.
fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if width <= image.width() && height <= image.height() {
        imageops::thumbnail(image, width, height)
    } else {
        imageops::resize(image, width, height, FilterType::Triangle)
    }
}

/// A JPEG from [`encode_under_limit`].
struct Encoded {
    jpeg: Vec<u8>,
    /// Width and height, in pixels.
    size: (u32, u32),
    quality: u8,
}

/// Encodes `image` as a JPEG of at most 5 MB: quality 90, then 75, then
/// smaller sizes (never a side under 80), then lower qualities down to 30.
fn encode_under_limit(image: &RgbImage) -> Result<Encoded, ConvertError> {
    let (width, height) = image.dimensions();
    // Scaling below this would take the short side under 80.
    let min_scale = f64::from(MIN_SIDE) / f64::from(width.min(height).max(1));
    let mut quality = FIRST_QUALITY;
    let mut scale = 1.0_f64;
    let mut current = Cow::Borrowed(image);
    let mut last_len = 0;
    for _ in 0..MAX_ENCODE_ATTEMPTS {
        let jpeg = encode_jpeg(&current, quality)?;
        if jpeg.len() <= MAX_IMAGE_BYTES {
            return Ok(Encoded {
                jpeg,
                size: current.dimensions(),
                quality,
            });
        }
        last_len = jpeg.len();
        // The size of a JPEG is roughly proportional to its pixel count.
        let ratio = MAX_IMAGE_BYTES as f64 / last_len as f64;
        let (mut next_quality, mut next_scale) = (quality, scale);
        if quality > SECOND_QUALITY {
            next_quality = SECOND_QUALITY;
            // Quality 75 usually takes about 60% of quality 90's bytes; when
            // that will not be enough, shrink in the same step.
            let after_quality = ratio / 0.6;
            if after_quality < 1.0 {
                next_scale = scale * after_quality.sqrt() * 0.9;
            }
        } else {
            next_scale = scale * ratio.sqrt() * 0.9;
        }
        next_scale = next_scale.max(min_scale);
        if next_scale >= scale && next_quality == quality {
            // As small as it may get: lower the quality instead.
            if quality <= MIN_QUALITY {
                break;
            }
            next_quality = quality.saturating_sub(15).max(MIN_QUALITY);
        }
        if next_scale < scale {
            let side = |v: u32| ((f64::from(v) * next_scale).ceil() as u32).max(1);
            current = Cow::Owned(resize(image, side(width), side(height)));
        }
        (quality, scale) = (next_quality, next_scale);
    }
    Err(ConvertError::Encode(format!(
        "still {last_len} bytes at quality {quality}, more than the {MAX_IMAGE_BYTES}-byte limit"
    )))
}

/// One JPEG encoding of an RGB image.
fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ConvertError> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| ConvertError::Encode(e.to_string()))?;
    Ok(jpeg)
}

/// Whether a JPEG reaches its end-of-image marker: its marker segments are
/// walked by their lengths (an EXIF thumbnail's own markers are skipped with
/// its segment) and its entropy-coded data scanned for the next marker. The
/// decoder is lenient and paints what is missing grey, so a truncated JPEG
/// would otherwise be labeled as half a grey picture.
pub(crate) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    loop {
        // Find the next marker: 0xFF, fill bytes, then the marker code.
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1; // stray bytes between segments, as lenient decoders allow
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return false;
        };
        pos += 1;
        match marker {
            0xD9 => return true,                   // EOI
            0xD0..=0xD7 | 0x01 | 0x00 => continue, // standalone markers
            _ => {}
        }
        let Some(len) = bytes.get(pos..pos + 2) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 || pos + len > bytes.len() {
            return false;
        }
        pos += len;
        if marker == 0xDA {
            // SOS: entropy-coded data until a marker other than a stuffed
            // zero or a restart marker.
            loop {
                while pos < bytes.len() && bytes[pos] != 0xFF {
                    pos += 1;
                }
                let mut next = pos + 1;
                while bytes.get(next) == Some(&0xFF) {
                    next += 1;
                }
                match bytes.get(next) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => pos = next + 1,
                    Some(_) => break, // a real marker: back to the segment walk
                }
            }
        }
    }
}

/// Whether the image is an animation of more than one frame, told cheaply
/// from its structure (nothing is decompressed): GIF image descriptors, the
/// WebP `VP8X` animation flag, or a PNG `acTL` chunk announcing frames.
pub(crate) fn is_animated(format: Format, bytes: &[u8]) -> bool {
    match format {
        Format::Gif => gif_frame_count(bytes, 2) >= 2,
        // VP8X chunk: "VP8X", its size (4 bytes), then the flags; 0x02 is
        // the animation flag.
        Format::WebP => {
            bytes.get(12..16) == Some(b"VP8X") && bytes.get(20).is_some_and(|f| f & 0x02 != 0)
        }
        Format::Png => apng_frame_count(bytes).is_some_and(|n| n > 1),
        _ => false,
    }
}

/// The number of frames of a GIF, counting at most `stop_at`: its blocks are
/// walked by their lengths.
fn gif_frame_count(bytes: &[u8], stop_at: usize) -> usize {
    // Header (6) and logical screen descriptor (7), then the global colour
    // table if the flag says so.
    let Some(&packed) = bytes.get(10) else {
        return 0;
    };
    let mut pos = 13;
    if packed & 0x80 != 0 {
        pos += 3 << ((packed & 0x07) + 1);
    }
    // Skips a chain of data sub-blocks; `None` when the data ends first.
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(pos)?);
            pos += 1;
            if len == 0 {
                return Some(pos);
            }
            pos += len;
        }
    };
    let mut frames = 0;
    while frames < stop_at {
        match bytes.get(pos) {
            // Extension: introducer, label, sub-blocks.
            Some(0x21) => match skip_sub_blocks(pos + 2) {
                Some(next) => pos = next,
                None => break,
            },
            // Image descriptor: 9 bytes, a local colour table, the LZW code
            // size, the image data's sub-blocks.
            Some(0x2C) => {
                frames += 1;
                let Some(&packed) = bytes.get(pos + 9) else {
                    break;
                };
                pos += 10;
                if packed & 0x80 != 0 {
                    pos += 3 << ((packed & 0x07) + 1);
                }
                match skip_sub_blocks(pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
            _ => break, // trailer (0x3B), or the data ends
        }
    }
    frames
}

/// The frame count of an animated PNG's `acTL` chunk (which comes before the
/// image data), or `None` for a still PNG.
fn apng_frame_count(bytes: &[u8]) -> Option<u32> {
    let mut pos = 8; // after the signature
    loop {
        let header = bytes.get(pos..pos + 8)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"acTL" => {
                let n = bytes.get(pos + 8..pos + 12)?;
                return Some(u32::from_be_bytes([n[0], n[1], n[2], n[3]]));
            }
            b"IDAT" | b"IEND" => return None,
            _ => pos = pos.checked_add(12)?.checked_add(len)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitting_size_is_kept() {
        assert_eq!(fitted_size(4032, 3024), (4032, 3024));
        assert_eq!(fitted_size(80, 10_000), (80, 10_000));
    }

    #[test]
    fn a_long_side_is_brought_down_to_ten_thousand_keeping_the_aspect_ratio() {
        assert_eq!(fitted_size(20_000, 15_000), (10_000, 7_500));
        assert_eq!(fitted_size(12_000, 200), (10_000, 167));
    }

    #[test]
    fn a_short_side_is_brought_up_to_eighty_keeping_the_aspect_ratio() {
        assert_eq!(fitted_size(1, 1), (80, 80));
        assert_eq!(fitted_size(50, 100), (80, 160));
        assert_eq!(fitted_size(0, 0), (80, 80));
    }

    #[test]
    fn a_thin_strip_gives_up_the_aspect_ratio_to_stay_within_both_limits() {
        assert_eq!(fitted_size(30_000, 1), (10_000, 80));
        assert_eq!(fitted_size(1, 9_000), (80, 10_000));
        assert_eq!(fitted_size(u32::MAX, 1), (10_000, 80));
    }

    #[test]
    fn a_jpeg_walk_finds_the_end_marker_past_stuffed_bytes_and_restarts() {
        // SOI, APP0 (len 4), SOS (len 2), data with FF 00 and RST0, EOI.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF,
            0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9,
        ];
        assert!(jpeg_is_complete(&jpeg));
        for cut in 0..jpeg.len() - 1 {
            assert!(!jpeg_is_complete(&jpeg[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn a_jpeg_end_marker_inside_an_exif_thumbnail_does_not_count() {
        // APP1 (len 6) holding FF D9, then the data stops.
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD8, 0xFF, 0xD9];
        assert!(!jpeg_is_complete(&jpeg));
    }

    #[test]
    fn a_gif_with_one_image_is_no_animation_and_garbage_counts_no_frames() {
        // Header, screen 1×1 without a global table, one image, trailer.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        gif.extend_from_slice(&[
            0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x4C, 0x01, 0x00,
        ]);
        gif.push(0x3B);
        assert_eq!(gif_frame_count(&gif, 5), 1);
        assert!(!is_animated(Format::Gif, &gif));
        assert_eq!(gif_frame_count(b"GIF89a", 5), 0);
        assert_eq!(gif_frame_count(&[0xFF; 64], 5), 0);
    }

    #[test]
    fn limits_read_as_words() {
        assert_eq!(
            SizeLimit::Pixels(120_000_000).to_string(),
            "120-megapixel limit"
        );
        assert_eq!(
            SizeLimit::Side(30_000).to_string(),
            "30000-pixel side limit"
        );
        assert_eq!(
            SizeLimit::Memory(1 << 30).to_string(),
            "1024 MiB memory limit"
        );
    }
}
