//! The conversion module from the outside: sniffing, routing, header
//! dimensions and conversion, on samples generated here with the `image`
//! crate (and `jpeg-encoder` for a CMYK JPEG, `png` for a palette PNG).

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{
    Delay, DynamicImage, Frame, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage,
};
use worker::convert::{
    convert, header_dimensions, route, sniff, ConvertError, Converted, Format, Limits, Route,
    SizeLimit, HEAD_BYTES,
};

const MB: u64 = 1024 * 1024;
const RED: Rgb<u8> = Rgb([220, 20, 20]);
const BLUE: Rgb<u8> = Rgb([20, 20, 220]);

// ---- samples --------------------------------------------------------------

/// A small deterministic pseudo-random generator (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let n = self.next().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
    }
}

fn noisy(width: u32, height: u32) -> RgbImage {
    let mut data = vec![0; (width * height * 3) as usize];
    Noise(0x9E37_79B9_7F4A_7C15).fill(&mut data);
    RgbImage::from_raw(width, height, data).unwrap()
}

fn solid(width: u32, height: u32, colour: Rgb<u8>) -> RgbImage {
    RgbImage::from_pixel(width, height, colour)
}

fn encoded(image: impl Into<DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.into().write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(image)
        .unwrap();
    bytes
}

fn png(image: impl Into<DynamicImage>) -> Vec<u8> {
    encoded(image, ImageFormat::Png)
}

/// A GIF of two frames, `first` then `second`.
fn animated_gif(first: Rgb<u8>, second: Rgb<u8>) -> Vec<u8> {
    let frame = |Rgb([r, g, b]): Rgb<u8>| {
        Frame::from_parts(
            RgbaImage::from_pixel(100, 100, Rgba([r, g, b, 255])),
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        )
    };
    let mut bytes = Vec::new();
    GifEncoder::new(&mut bytes)
        .encode_frames([frame(first), frame(second)])
        .unwrap();
    bytes
}

/// A JPEG with an EXIF block (APP1 `Exif\0\0`, a little-endian TIFF header
/// and one IFD entry, Orientation = `orientation`) spliced in after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD at offset 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A valid PNG header declaring a `width`×`height` RGB canvas, followed by a
/// tiny IDAT (one compressed row of zeros) and IEND: a decompression bomb's
/// shape, a few dozen bytes.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes, stored uncompressed.
    png_chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01,
        ],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A small JPEG whose frame header (SOF0) is patched to declare
/// `width`×`height`.
fn jpeg_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(&solid(16, 16, RED), 90);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG has SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

// ---- checks ---------------------------------------------------------------

/// What Rekognition needs of raw bytes: a JPEG that decodes, at most 5 MB,
/// both sides within 80..=10,000, matching `output`. Returns it decoded.
fn assert_rekognition_ready(converted: &Converted) -> RgbImage {
    let jpeg = &converted.jpeg;
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
    assert!(jpeg.len() as u64 <= 5 * MB, "{} bytes", jpeg.len());
    let decoded = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .expect("the output decodes")
        .to_rgb8();
    let (w, h) = decoded.dimensions();
    assert_eq!((w, h), converted.output);
    assert!((80..=10_000).contains(&w), "width {w}");
    assert!((80..=10_000).contains(&h), "height {h}");
    decoded
}

fn assert_close(actual: Rgb<u8>, expected: Rgb<u8>) {
    let close = actual
        .0
        .iter()
        .zip(expected.0)
        .all(|(&a, e)| a.abs_diff(e) <= 24);
    assert!(close, "{actual:?} is not close to {expected:?}");
}

fn centre(image: &RgbImage) -> Rgb<u8> {
    *image.get_pixel(image.width() / 2, image.height() / 2)
}

fn converted(bytes: &[u8]) -> Converted {
    convert(bytes, &Limits::default()).expect("converts")
}

// ---- sniff ----------------------------------------------------------------

#[test]
fn every_decodable_format_is_recognised_from_its_bytes() {
    let image = solid(8, 8, RED);
    let cases = [
        (ImageFormat::Jpeg, Format::Jpeg),
        (ImageFormat::Png, Format::Png),
        (ImageFormat::Gif, Format::Gif),
        (ImageFormat::WebP, Format::WebP),
        (ImageFormat::Tiff, Format::Tiff),
        (ImageFormat::Bmp, Format::Bmp),
    ];
    for (written, expected) in cases {
        let bytes = encoded(image.clone(), written);
        assert_eq!(sniff(&bytes), Some(expected), "{written:?}");
    }
    assert_eq!(sniff(b"GIF87a\x01\x00"), Some(Format::Gif));
    assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some(Format::Tiff));
    assert_eq!(sniff(b"II+\0\x08\0\0\0"), Some(Format::Tiff), "BigTIFF");
}

#[test]
fn a_jpeg_named_png_is_sniffed_as_a_jpeg_since_only_its_bytes_count() {
    // What an upload called "holiday.png" holds: JPEG bytes.
    let holiday_png = jpeg(&solid(8, 8, BLUE), 90);
    assert_eq!(sniff(&holiday_png), Some(Format::Jpeg));
}

#[test]
fn text_and_empty_input_are_not_images() {
    assert_eq!(sniff(b"Lorem ipsum dolor sit amet, consectetur"), None);
    assert_eq!(sniff(b"%PDF-1.7\n"), None);
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(&[0xFF, 0xD8]), None);
    assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
}

#[test]
fn heic_and_avif_are_recognised_from_their_ftyp_brands() {
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    assert_eq!(sniff(heic), Some(Format::Heif));
    let avif = b"\0\0\0\x20ftypavif\0\0\0\0avifmif1miafMA1B";
    assert_eq!(sniff(avif), Some(Format::Avif));
    // A generic major brand: the compatible brands decide, AVIF first.
    let mif1_avif = b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf";
    assert_eq!(sniff(mif1_avif), Some(Format::Avif));
    let mif1_heic = b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic";
    assert_eq!(sniff(mif1_heic), Some(Format::Heif));
    // An MP4 video is ISO-BMFF too, but no image.
    let mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2";
    assert_eq!(sniff(mp4), None);
    assert_eq!(Format::Heif.name(), "HEIC/HEIF");
    assert_eq!(Format::Avif.name(), "AVIF");
}

// ---- route ----------------------------------------------------------------

#[test]
fn a_jpeg_or_png_within_every_limit_goes_to_rekognition_directly() {
    assert_eq!(
        route(Some(Format::Jpeg), 3 * MB, Some((4032, 3024))),
        Route::Direct
    );
    assert_eq!(
        route(Some(Format::Png), 15 * MB, Some((80, 10_000))),
        Route::Direct
    );
}

#[test]
fn a_jpeg_over_15_mb_is_converted() {
    assert_eq!(
        route(Some(Format::Jpeg), 15 * MB + 1, Some((8064, 6048))),
        Route::Convert
    );
}

#[test]
fn a_png_12000_pixels_wide_is_converted() {
    assert_eq!(
        route(Some(Format::Png), MB, Some((12_000, 200))),
        Route::Convert
    );
}

#[test]
fn a_50_pixel_jpeg_is_converted() {
    assert_eq!(
        route(Some(Format::Jpeg), 2_000, Some((50, 50))),
        Route::Convert
    );
    assert_eq!(
        route(Some(Format::Jpeg), 2_000, Some((640, 79))),
        Route::Convert
    );
}

#[test]
fn a_jpeg_whose_dimensions_are_unknown_is_converted() {
    assert_eq!(route(Some(Format::Jpeg), MB, None), Route::Convert);
}

#[test]
fn gif_webp_tiff_and_bmp_are_converted() {
    for format in [Format::Gif, Format::WebP, Format::Tiff, Format::Bmp] {
        assert_eq!(
            route(Some(format), MB, Some((640, 480))),
            Route::Convert,
            "{format}"
        );
    }
}

#[test]
fn heif_and_avif_are_converted() {
    for format in [Format::Heif, Format::Avif] {
        assert_eq!(route(Some(format), MB, None), Route::Convert, "{format}");
    }
}

#[test]
fn unknown_bytes_are_refused_as_not_an_image() {
    assert_eq!(
        route(None, 100, None),
        Route::Refuse(ConvertError::NotAnImage)
    );
    assert_eq!(
        ConvertError::NotAnImage.to_string(),
        "not an image: the bytes are not JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC or AVIF"
    );
}

// ---- header_dimensions ----------------------------------------------------

#[test]
fn dimensions_are_read_from_a_64_kib_prefix_of_a_larger_png() {
    let bytes = png(noisy(600, 400));
    assert!(bytes.len() > 4 * HEAD_BYTES);
    assert_eq!(header_dimensions(&bytes[..HEAD_BYTES]), Some((600, 400)));
}

#[test]
fn dimensions_are_read_from_a_64_kib_prefix_of_a_larger_jpeg() {
    let bytes = jpeg(&noisy(600, 400), 90);
    assert!(bytes.len() > 2 * HEAD_BYTES);
    assert_eq!(header_dimensions(&bytes[..HEAD_BYTES]), Some((600, 400)));
}

#[test]
fn a_bomb_header_reports_the_canvas_it_declares() {
    assert_eq!(
        header_dimensions(&png_bomb(100_000, 100_000)),
        Some((100_000, 100_000))
    );
}

#[test]
fn a_prefix_too_short_or_not_an_image_gives_no_dimensions() {
    let bytes = png(solid(300, 200, RED));
    assert_eq!(header_dimensions(&bytes[..12]), None);
    assert_eq!(header_dimensions(b"plain text, not an image"), None);
    assert_eq!(
        header_dimensions(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
        None
    );
}

// ---- convert --------------------------------------------------------------

#[test]
fn an_animated_gif_is_labeled_from_its_first_frame() {
    let converted = converted(&animated_gif(RED, BLUE));
    let output = assert_rekognition_ready(&converted);
    assert_close(centre(&output), RED);
    assert_eq!(converted.from, Format::Gif);
    assert!(converted.first_frame_of_animation);
    assert!(converted.note().contains("first frame of an animation"));
}

#[test]
fn a_still_gif_is_not_called_an_animation() {
    let converted = converted(&encoded(solid(100, 100, BLUE), ImageFormat::Gif));
    assert!(!converted.first_frame_of_animation);
    assert_close(centre(&assert_rekognition_ready(&converted)), BLUE);
}

#[test]
fn a_cmyk_jpeg_becomes_an_rgb_jpeg() {
    // Pure red in CMYK: no cyan, full magenta and yellow, no black.
    let cmyk: Vec<u8> = [0u8, 255, 255, 0].repeat(120 * 90);
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 95)
        .encode(&cmyk, 120, 90, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    assert_eq!(sniff(&bytes), Some(Format::Jpeg));
    let converted = converted(&bytes);
    let output = assert_rekognition_ready(&converted);
    assert_eq!(converted.output, (120, 90));
    let Rgb([r, g, b]) = centre(&output);
    assert!(r > 200 && g < 60 && b < 60, "{:?}", (r, g, b));
}

#[test]
fn a_16_bit_tiff_becomes_a_jpeg() {
    let image: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(160, 120, Rgb([56_000, 5_000, 5_000]));
    let bytes = encoded(DynamicImage::ImageRgb16(image), ImageFormat::Tiff);
    assert_eq!(sniff(&bytes), Some(Format::Tiff));
    let converted = converted(&bytes);
    let output = assert_rekognition_ready(&converted);
    assert_eq!(converted.output, (160, 120));
    assert_close(centre(&output), Rgb([218, 19, 19]));
}

#[test]
fn grey_16_bit_and_palette_pngs_become_rgb_jpegs() {
    let grey: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(100, 100, Luma([32_768]));
    let output = assert_rekognition_ready(&converted(&png(DynamicImage::ImageLuma16(grey))));
    assert_close(centre(&output), Rgb([128, 128, 128]));

    let mut palette_png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut palette_png, 100, 100);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(vec![220, 20, 20, 20, 20, 220]);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[1u8; 100 * 100]).unwrap();
    }
    let output = assert_rekognition_ready(&converted(&palette_png));
    assert_close(centre(&output), BLUE);
}

#[test]
fn an_exif_rotated_jpeg_comes_out_upright() {
    // Stored 200×100, red on the left and blue on the right; Orientation 6
    // says: rotate 90° clockwise to display, so the left column ends on top.
    let stored = RgbImage::from_fn(200, 100, |x, _| if x < 100 { RED } else { BLUE });
    let bytes = with_exif_orientation(&jpeg(&stored, 95), 6);
    let converted = converted(&bytes);
    let output = assert_rekognition_ready(&converted);
    assert_eq!(converted.original, (200, 100));
    assert_eq!(converted.output, (100, 200));
    assert!(converted.orientation_applied);
    assert_close(*output.get_pixel(50, 20), RED);
    assert_close(*output.get_pixel(50, 180), BLUE);
    assert_eq!(
        converted.note(),
        "converted from JPEG, 200×100 → 100×200, EXIF orientation applied"
    );
}

#[test]
fn a_one_pixel_png_is_scaled_up_to_80_pixels() {
    let converted = converted(&png(solid(1, 1, RED)));
    let output = assert_rekognition_ready(&converted);
    assert_eq!(converted.output, (80, 80));
    assert_close(centre(&output), RED);
}

#[test]
fn a_thin_png_is_scaled_up_keeping_its_aspect_ratio() {
    let converted = converted(&png(solid(300, 20, RED)));
    assert_rekognition_ready(&converted);
    assert_eq!(converted.output, (1200, 80));
}

#[test]
fn a_12000_by_200_png_is_scaled_within_rekognition_limits() {
    let converted = converted(&png(solid(12_000, 200, BLUE)));
    let output = assert_rekognition_ready(&converted);
    let (w, h) = converted.output;
    assert!(w <= 10_000 && h >= 80, "{w}×{h}");
    assert_eq!(converted.output, (10_000, 167));
    assert_close(centre(&output), BLUE);
}

#[test]
fn transparency_is_flattened_onto_white() {
    // Left half transparent black, right half opaque red.
    let image = RgbaImage::from_fn(160, 100, |x, _| {
        if x < 80 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([220, 20, 20, 255])
        }
    });
    let output = assert_rekognition_ready(&converted(&png(image)));
    assert_close(*output.get_pixel(20, 50), Rgb([255, 255, 255]));
    assert_close(*output.get_pixel(140, 50), RED);
}

#[test]
fn webp_and_bmp_become_jpegs() {
    for (format, expected) in [
        (ImageFormat::WebP, Format::WebP),
        (ImageFormat::Bmp, Format::Bmp),
    ] {
        let converted = converted(&encoded(solid(320, 240, BLUE), format));
        let output = assert_rekognition_ready(&converted);
        assert_eq!(converted.from, expected);
        assert_eq!(converted.output, (320, 240));
        assert_close(centre(&output), BLUE);
        assert_eq!(
            converted.note(),
            format!("converted from {}, 320×240 → 320×240", expected.name())
        );
    }
}

#[test]
fn a_truncated_jpeg_is_undecodable_not_a_panic() {
    let whole = jpeg(&noisy(300, 200), 90);
    let half = &whole[..whole.len() / 2];
    let error = convert(half, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            ConvertError::Undecodable {
                format: Format::Jpeg,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .starts_with("could not decode this JPEG: it is truncated"));
}

#[test]
fn truncated_and_corrupted_files_of_every_format_never_panic() {
    let image = noisy(40, 30);
    let formats = [
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::WebP,
        ImageFormat::Tiff,
        ImageFormat::Bmp,
        ImageFormat::Jpeg,
    ];
    let mut noise = Noise(7);
    for format in formats {
        let whole = encoded(image.clone(), format);
        for cut in [
            1,
            2,
            3,
            8,
            16,
            30,
            60,
            100,
            whole.len() / 2,
            whole.len() - 1,
        ] {
            if cut < whole.len() {
                // Ok or Err; what matters is that it returns.
                let _ = convert(&whole[..cut], &Limits::default());
            }
        }
        for _ in 0..20 {
            let mut corrupt = whole.clone();
            let at = 8 + (noise.next() as usize) % (corrupt.len() - 8);
            corrupt[at] ^= (noise.next() as u8) | 1;
            let _ = convert(&corrupt, &Limits::default());
        }
    }
}

#[test]
fn a_decompression_bomb_png_is_refused_from_its_header_quickly() {
    let bomb = png_bomb(100_000, 100_000);
    assert!(bomb.len() < 100);
    let started = Instant::now();
    let error = convert(&bomb, &Limits::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        error,
        ConvertError::TooLarge {
            width: 100_000,
            height: 100_000,
            limit: SizeLimit::Pixels(120_000_000),
        }
    );
    assert_eq!(
        error.to_string(),
        "declares a 100000×100000 canvas, more than the 120-megapixel limit: refused before decoding"
    );
}

#[test]
fn a_decompression_bomb_jpeg_is_refused_from_its_header_quickly() {
    let bomb = jpeg_bomb(65_000, 65_000);
    let started = Instant::now();
    let error = convert(&bomb, &Limits::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            error,
            ConvertError::TooLarge {
                width: 65_000,
                height: 65_000,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_canvas_over_the_side_pixel_or_memory_limit_is_refused() {
    let bytes = png(solid(400, 300, RED));
    let limits = |max_pixels, max_side, max_alloc| Limits {
        max_pixels,
        max_side,
        max_alloc,
    };
    let too_large = |limit| ConvertError::TooLarge {
        width: 400,
        height: 300,
        limit,
    };
    assert_eq!(
        convert(&bytes, &limits(100_000, 30_000, 1 << 30)).unwrap_err(),
        too_large(SizeLimit::Pixels(100_000))
    );
    assert_eq!(
        convert(&bytes, &limits(1_000_000, 399, 1 << 30)).unwrap_err(),
        too_large(SizeLimit::Side(399))
    );
    assert_eq!(
        convert(&bytes, &limits(1_000_000, 30_000, 100_000)).unwrap_err(),
        too_large(SizeLimit::Memory(100_000))
    );
}

#[test]
fn a_48_megapixel_photo_is_within_the_default_limits() {
    let limits = Limits::default();
    assert!(8064 * 6048 <= limits.max_pixels);
    assert!(8064 <= limits.max_side);
    assert!(8064 * 6048 * 4 <= limits.max_alloc);
}

/// Converts a noisy `width`×`height` image, over 5 MB as a JPEG at quality
/// 90 (noise takes about 1.9 bytes a pixel there), and checks the
/// quality/scale loop brought it under 5 MB. Returns the output's size.
fn assert_noise_comes_out_under_5_mb(width: u32, height: u32) -> (u32, u32) {
    // BMP: raw pixels, quick to write and to read back.
    let bytes = encoded(noisy(width, height), ImageFormat::Bmp);
    let converted = converted(&bytes);
    assert_rekognition_ready(&converted);
    let (w, h) = converted.output;
    // Quality 90 at full size did not fit: a lower quality or a smaller size.
    assert!(
        converted.quality < 90 || (w, h) != (width, height),
        "{w}×{h} at quality {}",
        converted.quality
    );
    let (source_ratio, output_ratio) = (width as f64 / height as f64, w as f64 / h as f64);
    assert!((output_ratio - source_ratio).abs() < 0.01, "{w}×{h}");
    (w, h)
}

#[test]
fn a_noisy_photo_too_big_at_quality_90_comes_out_under_5_mb() {
    // 2.94 megapixels: about 5.5 MB at quality 90, the smallest noise that
    // does not fit, to keep this test to seconds in a debug build.
    assert_noise_comes_out_under_5_mb(2100, 1400);
}

#[test]
fn a_noisy_24_megapixel_photo_comes_out_under_5_mb() {
    // About 45 MB at quality 90: lower quality alone is not enough.
    let (w, h) = assert_noise_comes_out_under_5_mb(6000, 4000);
    assert!(w < 6000 && h < 4000, "{w}×{h}: scaled down");
}

#[test]
fn text_is_not_an_image_for_convert_too() {
    assert_eq!(
        convert(b"just some words", &Limits::default()).unwrap_err(),
        ConvertError::NotAnImage
    );
}

#[test]
fn every_output_decodes_and_fits_rekognition() {
    let samples = [
        png(solid(79, 10_001, RED)),
        png(solid(10_001, 79, BLUE)),
        encoded(solid(81, 81, RED), ImageFormat::Gif),
        jpeg(&noisy(500, 500), 100),
    ];
    for bytes in samples {
        assert_rekognition_ready(&converted(&bytes));
    }
}

#[test]
fn the_first_frame_wins_whichever_colour_it_is() {
    // The animated GIF test the other way round: blue first, then red.
    let converted = converted(&animated_gif(BLUE, RED));
    assert_close(centre(&assert_rekognition_ready(&converted)), BLUE);
}
