//! HEIC/HEIF and AVIF conversion through libheif ([`worker::heif`]), on small
//! files in `tests/fixtures/` written by libheif's `heif-enc` 1.15 (x265 for
//! HEVC, libaom for AV1) from PNGs of known colours:
//!
//! - `halves.heic`, `halves.avif`: 320×200, the left half red (220, 30, 30),
//!   the right half blue (30, 30, 220);
//! - `halves-10bit.heic`: the same from a 16-bit PNG, coded at 10 bits;
//! - `alpha.heic`, `alpha.avif`: 320×200, transparent but for an opaque
//!   black 100×100 square in the middle (an alpha plane as an auxiliary
//!   image);
//! - `halves-rotated.heic`: `halves.heic` with an `irot` property turning it
//!   a quarter turn anticlockwise, as phones store portrait photos
//!   (`python3 add-irot.py halves.heic halves-rotated.heic 1`: heif-enc
//!   writes no rotation).
//!
//! These tests need libheif 1.x (`libheif.so.1`) with its HEVC and AV1
//! decoders, as Debian's `libheif1` has; `make test` installs it.

use image::{ImageFormat, Rgb, RgbImage};
use worker::convert::{convert, route, sniff, ConvertError, Format, Limits, Route, SizeLimit};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decoded_jpeg(jpeg: &[u8]) -> RgbImage {
    image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .expect("the output is a JPEG")
        .into_rgb8()
}

/// Within `tolerance` of `expected` on every channel (lossy codecs twice).
fn near(actual: Rgb<u8>, expected: [u8; 3], tolerance: u8) -> bool {
    actual
        .0
        .iter()
        .zip(expected)
        .all(|(a, e)| a.abs_diff(e) <= tolerance)
}

/// The file with the `ispe` (image spatial extents) property of its image
/// rewritten to declare `width`×`height`: a few hundred bytes that claim a
/// gigantic canvas.
fn declaring(bytes: &[u8], width: u32, height: u32) -> Vec<u8> {
    let at = bytes
        .windows(4)
        .position(|w| w == b"ispe")
        .expect("the file has an ispe box");
    let mut out = bytes.to_vec();
    // Box type, then version and flags (4 bytes), then width and height.
    out[at + 8..at + 12].copy_from_slice(&width.to_be_bytes());
    out[at + 12..at + 16].copy_from_slice(&height.to_be_bytes());
    out
}

fn assert_halves(name: &str, from: Format) {
    let converted = convert(&fixture(name), &Limits::default())
        .unwrap_or_else(|e| panic!("{name} was not converted: {e}"));
    assert_eq!(converted.from, from);
    assert_eq!(converted.original, (320, 200));
    assert_eq!(converted.output, (320, 200));
    assert!(!converted.orientation_applied);
    assert!(!converted.first_frame_of_animation);
    let name_of = from.name();
    assert_eq!(
        converted.note(),
        format!("converted from {name_of}, 320×200 → 320×200")
    );
    let pixels = decoded_jpeg(&converted.jpeg);
    assert_eq!(pixels.dimensions(), (320, 200));
    let left = *pixels.get_pixel(40, 100);
    let right = *pixels.get_pixel(280, 100);
    assert!(
        near(left, [220, 30, 30], 24),
        "{name}: left half is {left:?}"
    );
    assert!(
        near(right, [30, 30, 220], 24),
        "{name}: right half is {right:?}"
    );
}

#[test]
fn a_heic_photo_becomes_a_jpeg_with_the_same_colours() {
    assert_halves("halves.heic", Format::Heif);
}

#[test]
fn an_avif_image_becomes_a_jpeg_with_the_same_colours() {
    assert_halves("halves.avif", Format::Avif);
}

#[test]
fn a_10_bit_heic_is_converted_to_8_bits() {
    assert_halves("halves-10bit.heic", Format::Heif);
}

#[test]
fn a_heic_stored_sideways_comes_out_upright() {
    let converted = convert(&fixture("halves-rotated.heic"), &Limits::default()).unwrap();
    assert_eq!(converted.original, (320, 200));
    assert_eq!(converted.output, (200, 320));
    assert!(converted.orientation_applied);
    assert_eq!(
        converted.note(),
        "converted from HEIC/HEIF, 320×200 → 200×320, rotation applied"
    );
    // A quarter turn anticlockwise: the right (blue) half is now on top.
    let pixels = decoded_jpeg(&converted.jpeg);
    let top = *pixels.get_pixel(100, 40);
    let bottom = *pixels.get_pixel(100, 280);
    assert!(near(top, [30, 30, 220], 24), "top {top:?}");
    assert!(near(bottom, [220, 30, 30], 24), "bottom {bottom:?}");
}

#[test]
fn transparency_in_heic_and_avif_is_flattened_onto_white() {
    for name in ["alpha.heic", "alpha.avif"] {
        let converted = convert(&fixture(name), &Limits::default())
            .unwrap_or_else(|e| panic!("{name} was not converted: {e}"));
        let pixels = decoded_jpeg(&converted.jpeg);
        let corner = *pixels.get_pixel(10, 10);
        let centre = *pixels.get_pixel(160, 100);
        assert!(
            near(corner, [255, 255, 255], 16),
            "{name}: corner {corner:?}"
        );
        assert!(near(centre, [0, 0, 0], 24), "{name}: centre {centre:?}");
    }
}

#[test]
fn heic_and_avif_files_are_routed_to_conversion_whatever_their_name() {
    for (name, format) in [("halves.heic", Format::Heif), ("halves.avif", Format::Avif)] {
        let bytes = fixture(name);
        assert_eq!(sniff(&bytes), Some(format), "{name}");
        // No header dimensions are read for ISO-BMFF files: they are
        // converted, and the conversion checks the canvas.
        assert_eq!(
            route(sniff(&bytes), bytes.len() as u64, None),
            Route::Convert
        );
    }
}

#[test]
fn a_heic_declaring_a_gigantic_canvas_is_refused_before_decoding() {
    let bomb = declaring(&fixture("halves.heic"), 20_000, 20_000);
    assert!(bomb.len() < 1000, "a bomb is small: {} bytes", bomb.len());
    assert_eq!(
        convert(&bomb, &Limits::default()).unwrap_err(),
        ConvertError::TooLarge {
            width: 20_000,
            height: 20_000,
            limit: SizeLimit::Pixels(120_000_000),
        }
    );
}

#[test]
fn an_avif_over_the_memory_limit_is_refused_before_decoding() {
    let limits = Limits {
        max_alloc: 1024 * 1024,
        ..Limits::default()
    };
    // 320×200 at 9 bytes a pixel (libheif's planes, its RGB image and the
    // worker's copy): 576,000 bytes, within 1 MiB; 640×640 is 3.7 MB.
    assert!(convert(&fixture("halves.avif"), &limits).is_ok());
    let large = declaring(&fixture("halves.avif"), 640, 640);
    assert_eq!(
        convert(&large, &limits).unwrap_err(),
        ConvertError::TooLarge {
            width: 640,
            height: 640,
            limit: SizeLimit::Memory(1024 * 1024),
        }
    );
}

#[test]
fn a_heic_wider_than_the_side_limit_is_refused_before_decoding() {
    let limits = Limits {
        max_side: 300,
        ..Limits::default()
    };
    assert_eq!(
        convert(&fixture("halves.heic"), &limits).unwrap_err(),
        ConvertError::TooLarge {
            width: 320,
            height: 200,
            limit: SizeLimit::Side(300),
        }
    );
    // Beyond libheif's own default limit (32,768 a side) too: the reason
    // still names the declared canvas.
    let bomb = declaring(&fixture("halves.heic"), 40_000, 40_000);
    assert_eq!(
        convert(&bomb, &Limits::default()).unwrap_err().to_string(),
        "declares a 40000×40000 canvas, more than the 120-megapixel limit: refused before decoding"
    );
}

#[test]
fn a_truncated_heic_is_failed_with_a_reason_from_libheif() {
    let whole = fixture("halves.heic");
    for cut in [whole.len() / 2, whole.len() - 40, 40] {
        let error = convert(&whole[..cut], &Limits::default()).unwrap_err();
        let ConvertError::Undecodable { format, detail } = &error else {
            panic!("{cut} bytes: {error}");
        };
        assert_eq!(*format, Format::Heif);
        assert!(detail.contains("libheif"), "{detail}");
        assert!(
            error
                .to_string()
                .starts_with("could not decode this HEIC/HEIF: it is truncated or corrupt"),
            "{error}"
        );
    }
}

#[test]
fn an_ftyp_box_with_nothing_after_it_is_undecodable_not_a_crash() {
    for bytes in [
        &b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"[..],
        &b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"[..],
    ] {
        assert!(matches!(
            convert(bytes, &Limits::default()).unwrap_err(),
            ConvertError::Undecodable { .. }
        ));
    }
}

#[test]
fn the_loaded_libheif_reports_its_version() {
    let version = worker::heif::version().expect("libheif is installed for the tests");
    assert!(version.starts_with("1."), "{version}");
}
