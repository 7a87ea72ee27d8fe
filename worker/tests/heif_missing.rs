//! A worker whose image lacks libheif: HEIC/HEIF and AVIF end FAILED with a
//! reason naming the missing library, and every other format still
//! converts. A test binary of its own, since the library is loaded once per
//! process (from `LABELER_LIBHEIF` here, a file that does not exist).

use image::{ImageFormat, RgbImage};
use worker::convert::{convert, ConvertError, Format, Limits};

#[test]
fn without_libheif_heic_and_avif_are_failed_naming_the_library_and_others_convert() {
    // The only test in this binary: nothing else reads the environment.
    std::env::set_var(worker::heif::LIBRARY_ENV, "/nonexistent/libheif.so.1");

    for (name, format) in [("halves.heic", Format::Heif), ("halves.avif", Format::Avif)] {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let error = convert(&bytes, &Limits::default()).unwrap_err();
        assert!(
            matches!(&error, ConvertError::Unsupported { format: f, .. } if *f == format),
            "{error:?}"
        );
        let reason = error.to_string();
        assert!(
            reason.starts_with(&format!(
                "{} images cannot be decoded by this worker: /nonexistent/libheif.so.1 could not be loaded (",
                format.name()
            )),
            "{reason}"
        );
        assert!(
            reason.contains("libheif1"),
            "says what to install: {reason}"
        );
        assert_eq!(error.class(), worker::error::ReasonClass::Other);
    }
    assert!(worker::heif::version().is_err());

    // A BMP still converts.
    let mut bmp = std::io::Cursor::new(Vec::new());
    RgbImage::from_pixel(100, 100, image::Rgb([1, 2, 3]))
        .write_to(&mut bmp, ImageFormat::Bmp)
        .unwrap();
    let converted = convert(bmp.get_ref(), &Limits::default()).unwrap();
    assert_eq!(converted.from, Format::Bmp);
}
