//! HEIC/HEIF and AVIF decoding with libheif, loaded when first needed.
//!
//! Phones write HEIC (HEVC-coded HEIF) and the web increasingly AVIF (AV1);
//! there is no maintained pure-Rust decoder for either. libheif (with
//! libde265 for HEVC and dav1d or libaom for AV1) is what Debian, GIMP,
//! ImageMagick and libvips use, and what this module calls.
//!
//! # Why the library is loaded at run time
//!
//! The worker opens `libheif.so.1` with `dlopen` the first time it meets a
//! HEIF or AVIF file, rather than linking it at build time:
//!
//! - the worker binary is cross-compiled with zig for arm64 on any host, and
//!   linking libheif would need an arm64 libheif and its headers on that
//!   host; loading it needs nothing at build time;
//! - the same binary runs with and without the library: without it, HEIF and
//!   AVIF images end FAILED with a reason naming the missing library
//!   ([`ConvertError::Unsupported`]), and every other format is unaffected;
//! - the maintained Rust binding (`libheif-rs`) needs libheif 1.17 or newer,
//!   and Debian 12, whose libraries the worker image carries, has 1.15.
//!
//! The functions called here are part of libheif's stable C API since 1.4 and
//! are declared below with their C signatures (`libheif/heif.h`). The worker
//! image carries Debian 12's `libheif1` and the libraries it needs
//! (`worker/image-libs.sh`); `LABELER_LIBHEIF` names another file to load.
//!
//! # Untrusted input
//!
//! The canvas is checked against [`Limits`] from the file's header (the
//! primary image's size, rotation applied) before any pixel is decoded, and
//! the decoded size is checked against it again. libheif is fuzzed
//! continuously (OSS-Fuzz); a crash inside it would end the process, which
//! Batch retries and, after its last attempt, the dispatcher records FAILED.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use image::{DynamicImage, RgbImage, RgbaImage};

use crate::formats::{exceeded_limit, ConvertError, Format, Limits, SizeLimit};

/// The environment variable naming the libheif to load instead of
/// [`DEFAULT_LIBRARY`], e.g. `/opt/libheif/lib/libheif.so.1`.
pub const LIBRARY_ENV: &str = "LABELER_LIBHEIF";
/// The library loaded when [`LIBRARY_ENV`] is unset: libheif's SONAME,
/// found through the system's library path.
pub const DEFAULT_LIBRARY: &str = "libheif.so.1";

// Values of libheif's C enums (`libheif/heif.h`).
const HEIF_ERROR_OK: c_int = 0;
const HEIF_SUBERROR_SECURITY_LIMIT_EXCEEDED: c_int = 1000;
const HEIF_COMPRESSION_HEVC: c_int = 1;
const HEIF_COMPRESSION_AV1: c_int = 4;
const HEIF_COLORSPACE_RGB: c_int = 1;
const HEIF_CHROMA_INTERLEAVED_RGB: c_int = 10;
const HEIF_CHROMA_INTERLEAVED_RGBA: c_int = 11;
const HEIF_CHANNEL_INTERLEAVED: c_int = 10;

/// libheif's own limit on each side, which it checks when it reads the
/// file: only a backstop. Reading parses boxes and allocates no pixel, and
/// [`Limits`] are checked from the primary image's size before decoding, so
/// that the reason names the canvas the file declares.
const LIBHEIF_SIDE_LIMIT: c_int = 1 << 20;

/// Bytes a pixel may take inside libheif while it decodes, beside its RGB(A)
/// output and this module's copy of it: the YCbCr planes, at most 4:4:4 at 8
/// bits or 4:2:0 at 16 bits.
const DECODER_BYTES_PER_PIXEL: u64 = 3;

/// `struct heif_error`, returned by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

/// Opaque libheif objects.
type Context = c_void;
type Handle = c_void;
type Image = c_void;

/// The libheif functions this module calls, resolved once.
struct Api {
    version: String,
    context_alloc: unsafe extern "C" fn() -> *mut Context,
    context_free: unsafe extern "C" fn(*mut Context),
    read_from_memory_without_copy:
        unsafe extern "C" fn(*mut Context, *const c_void, usize, *const c_void) -> HeifError,
    set_maximum_image_size_limit: unsafe extern "C" fn(*mut Context, c_int),
    primary_image_handle: unsafe extern "C" fn(*mut Context, *mut *mut Handle) -> HeifError,
    handle_release: unsafe extern "C" fn(*const Handle),
    handle_width: unsafe extern "C" fn(*const Handle) -> c_int,
    handle_height: unsafe extern "C" fn(*const Handle) -> c_int,
    handle_has_alpha: unsafe extern "C" fn(*const Handle) -> c_int,
    handle_ispe_width: unsafe extern "C" fn(*const Handle) -> c_int,
    handle_ispe_height: unsafe extern "C" fn(*const Handle) -> c_int,
    decode_image: unsafe extern "C" fn(
        *const Handle,
        *mut *mut Image,
        c_int,
        c_int,
        *const c_void,
    ) -> HeifError,
    image_width: unsafe extern "C" fn(*const Image, c_int) -> c_int,
    image_height: unsafe extern "C" fn(*const Image, c_int) -> c_int,
    plane_readonly: unsafe extern "C" fn(*const Image, c_int, *mut c_int) -> *const u8,
    image_release: unsafe extern "C" fn(*const Image),
    have_decoder_for_format: unsafe extern "C" fn(c_int) -> c_int,
    /// Kept loaded for the life of the process: the pointers above point
    /// into it.
    _library: libloading::Library,
}

/// libheif could not be loaded, so HEIF and AVIF cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{library} could not be loaded ({detail}); the worker image needs Debian's libheif1 (see worker/image-libs.sh) or {LIBRARY_ENV} naming a libheif")]
pub struct Unavailable {
    /// The file that was loaded.
    pub library: String,
    /// Why it failed, from the dynamic loader.
    pub detail: String,
}

impl Api {
    /// Loads `library` and resolves every function.
    fn load(library: &str) -> Result<Api, Unavailable> {
        let unavailable = |detail: String| Unavailable {
            library: library.to_owned(),
            detail,
        };
        // SAFETY: loading libheif runs its initialisers, which only register
        // its codecs; nothing else in the process depends on them.
        let lib =
            unsafe { libloading::Library::new(library) }.map_err(|e| unavailable(e.to_string()))?;
        macro_rules! function {
            ($name:literal) => {
                // SAFETY: the type each field is declared with is the C
                // signature of `$name` in libheif/heif.h, and the library
                // stays loaded as long as the pointer is used (`_library`).
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| unavailable(e.to_string()))?
            };
        }
        let get_version: unsafe extern "C" fn() -> *const c_char = function!("heif_get_version");
        // SAFETY: returns a static, NUL-terminated string.
        let version = unsafe { CStr::from_ptr(get_version()) }
            .to_string_lossy()
            .into_owned();
        Ok(Api {
            version,
            context_alloc: function!("heif_context_alloc"),
            context_free: function!("heif_context_free"),
            read_from_memory_without_copy: function!("heif_context_read_from_memory_without_copy"),
            set_maximum_image_size_limit: function!("heif_context_set_maximum_image_size_limit"),
            primary_image_handle: function!("heif_context_get_primary_image_handle"),
            handle_release: function!("heif_image_handle_release"),
            handle_width: function!("heif_image_handle_get_width"),
            handle_height: function!("heif_image_handle_get_height"),
            handle_has_alpha: function!("heif_image_handle_has_alpha_channel"),
            handle_ispe_width: function!("heif_image_handle_get_ispe_width"),
            handle_ispe_height: function!("heif_image_handle_get_ispe_height"),
            decode_image: function!("heif_decode_image"),
            image_width: function!("heif_image_get_width"),
            image_height: function!("heif_image_get_height"),
            plane_readonly: function!("heif_image_get_plane_readonly"),
            image_release: function!("heif_image_release"),
            have_decoder_for_format: function!("heif_have_decoder_for_format"),
            _library: lib,
        })
    }

    /// Whether this libheif can decode `format` (HEVC for HEIF, AV1 for
    /// AVIF): a build may lack either codec.
    fn can_decode(&self, format: Format) -> bool {
        let compression = match format {
            Format::Avif => HEIF_COMPRESSION_AV1,
            _ => HEIF_COMPRESSION_HEVC,
        };
        // SAFETY: a pure query on the library's codec registry.
        unsafe { (self.have_decoder_for_format)(compression) != 0 }
    }
}

/// The process's libheif: loaded once, from [`LIBRARY_ENV`] or
/// [`DEFAULT_LIBRARY`], the first time a HEIF or AVIF file is met.
fn api() -> Result<&'static Api, &'static Unavailable> {
    static API: OnceLock<Result<Api, Unavailable>> = OnceLock::new();
    API.get_or_init(|| {
        let library = std::env::var(LIBRARY_ENV).unwrap_or_else(|_| DEFAULT_LIBRARY.to_owned());
        Api::load(&library)
    })
    .as_ref()
}

/// The loaded libheif's version (e.g. `"1.15.1"`), or why it cannot be
/// loaded. For the worker's start-up log.
pub fn version() -> Result<String, Unavailable> {
    api().map(|api| api.version.clone()).map_err(Clone::clone)
}

/// A decoded HEIF or AVIF image: its primary image, upright.
pub(crate) struct Decoded {
    /// 8-bit RGB, or RGBA when the image has an alpha channel.
    pub(crate) image: DynamicImage,
    /// Width and height as coded in the file, before its rotation.
    pub(crate) stored: (u32, u32),
    /// The file turns the image a quarter turn (`irot`), and it was: its
    /// stored sides are swapped. A half turn or a mirror is applied too, but
    /// not noticed here.
    pub(crate) rotated: bool,
}

/// Decodes the primary image of a HEIF or AVIF file with the rotation,
/// mirroring and cropping the file specifies, as 8-bit RGB (RGBA when it has
/// transparency). The canvas is checked against `limits` before decoding.
pub(crate) fn decode(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Decoded, ConvertError> {
    let api = api().map_err(|e| ConvertError::Unsupported {
        format,
        why: e.to_string(),
    })?;
    if !api.can_decode(format) {
        let codec = if format == Format::Avif {
            "AV1"
        } else {
            "HEVC"
        };
        return Err(ConvertError::Unsupported {
            format,
            why: format!(
                "the worker's libheif {} has no {codec} decoder",
                api.version
            ),
        });
    }
    let context = ContextGuard::new(api);
    // SAFETY: a valid context, freed by the guard.
    unsafe { (api.set_maximum_image_size_limit)(context.ptr, LIBHEIF_SIDE_LIMIT) };
    // SAFETY: `bytes` outlives the context (the guard frees it before this
    // function returns), as reading without a copy requires.
    check(unsafe {
        (api.read_from_memory_without_copy)(
            context.ptr,
            bytes.as_ptr().cast(),
            bytes.len(),
            std::ptr::null(),
        )
    })
    .map_err(|e| refused(format, e))?;

    let mut handle: *mut Handle = std::ptr::null_mut();
    // SAFETY: a valid context and out-pointer; the handle is released by
    // its guard.
    check(unsafe { (api.primary_image_handle)(context.ptr, &mut handle) })
        .map_err(|e| refused(format, e))?;
    let handle = HandleGuard { api, ptr: handle };

    // SAFETY: a valid handle.
    let (width, height, has_alpha, stored) = unsafe {
        (
            (api.handle_width)(handle.ptr),
            (api.handle_height)(handle.ptr),
            (api.handle_has_alpha)(handle.ptr) != 0,
            sides(
                (api.handle_ispe_width)(handle.ptr),
                (api.handle_ispe_height)(handle.ptr),
            ),
        )
    };
    let (width, height) = sides(width, height).ok_or_else(|| ConvertError::Undecodable {
        format,
        detail: format!("it declares an invalid size ({width}×{height})"),
    })?;
    let too_large = |limit| ConvertError::TooLarge {
        width,
        height,
        limit,
    };
    if let Some(limit) = exceeded_limit(limits, width, height) {
        return Err(too_large(limit));
    }
    let channels: u64 = if has_alpha { 4 } else { 3 };
    let pixels = u64::from(width) * u64::from(height);
    // libheif's planes, its RGB(A) image and the copy made below.
    if pixels * (2 * channels + DECODER_BYTES_PER_PIXEL) > limits.max_alloc {
        return Err(too_large(SizeLimit::Memory(limits.max_alloc)));
    }

    let chroma = if has_alpha {
        HEIF_CHROMA_INTERLEAVED_RGBA
    } else {
        HEIF_CHROMA_INTERLEAVED_RGB
    };
    let mut image: *mut Image = std::ptr::null_mut();
    // SAFETY: a valid handle and out-pointer; NULL options are libheif's
    // defaults (transformations applied). The image is released by its guard.
    check(unsafe {
        (api.decode_image)(
            handle.ptr,
            &mut image,
            HEIF_COLORSPACE_RGB,
            chroma,
            std::ptr::null(),
        )
    })
    .map_err(|e| refused(format, e))?;
    let image = ImageGuard { api, ptr: image };

    let mut stride: c_int = 0;
    // SAFETY: a valid decoded image; the plane lives as long as the image,
    // and is only read below, before the guard releases it.
    let (plane, out_width, out_height) = unsafe {
        (
            (api.plane_readonly)(image.ptr, HEIF_CHANNEL_INTERLEAVED, &mut stride),
            (api.image_width)(image.ptr, HEIF_CHANNEL_INTERLEAVED),
            (api.image_height)(image.ptr, HEIF_CHANNEL_INTERLEAVED),
        )
    };
    let invalid = || ConvertError::Undecodable {
        format,
        detail: "libheif returned no pixels for it".into(),
    };
    let (out_width, out_height) = sides(out_width, out_height).ok_or_else(invalid)?;
    if let Some(limit) = exceeded_limit(limits, out_width, out_height) {
        return Err(ConvertError::TooLarge {
            width: out_width,
            height: out_height,
            limit,
        });
    }
    let row = out_width as usize * channels as usize;
    let stride = usize::try_from(stride).map_err(|_| invalid())?;
    if plane.is_null() || stride < row {
        return Err(invalid());
    }
    let rows = out_height as usize;
    // SAFETY: libheif's plane holds `rows` rows of `stride` bytes, the last
    // one at least `row` bytes long.
    let plane = unsafe { std::slice::from_raw_parts(plane, stride * (rows - 1) + row) };
    let mut samples = Vec::with_capacity(row * rows);
    for y in 0..rows {
        samples.extend_from_slice(&plane[y * stride..y * stride + row]);
    }
    let image = if has_alpha {
        RgbaImage::from_raw(out_width, out_height, samples).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(out_width, out_height, samples).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(invalid)?;
    let stored = stored.unwrap_or((out_width, out_height));
    Ok(Decoded {
        image,
        stored,
        rotated: stored != (out_width, out_height) && stored == (out_height, out_width),
    })
}

/// Positive sides as `u32`, or `None`.
fn sides(width: c_int, height: c_int) -> Option<(u32, u32)> {
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Some((w, h)),
        _ => None,
    }
}

/// `Ok` for libheif's success, the error otherwise.
fn check(error: HeifError) -> Result<(), HeifError> {
    if error.code == HEIF_ERROR_OK {
        Ok(())
    } else {
        Err(error)
    }
}

/// libheif's message, in words.
fn message(error: &HeifError) -> String {
    if error.message.is_null() {
        return format!("libheif error {}.{}", error.code, error.subcode);
    }
    // SAFETY: libheif's messages are static, NUL-terminated strings.
    unsafe { CStr::from_ptr(error.message) }
        .to_string_lossy()
        .trim_end()
        .to_owned()
}

/// A libheif error in words: its own size refusal, or a file it could not
/// read.
fn refused(format: Format, error: HeifError) -> ConvertError {
    let detail = if error.subcode == HEIF_SUBERROR_SECURITY_LIMIT_EXCEEDED {
        format!(
            "it is beyond libheif's security limits ({})",
            message(&error)
        )
    } else {
        format!("it is truncated or corrupt (libheif: {})", message(&error))
    };
    ConvertError::Undecodable { format, detail }
}

/// Frees a context when dropped.
struct ContextGuard {
    api: &'static Api,
    ptr: *mut Context,
}

impl ContextGuard {
    fn new(api: &'static Api) -> Self {
        // SAFETY: allocation only; freed in `drop`.
        let ptr = unsafe { (api.context_alloc)() };
        ContextGuard { api, ptr }
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        // SAFETY: allocated by `heif_context_alloc`, freed once.
        unsafe { (self.api.context_free)(self.ptr) }
    }
}

/// Releases an image handle when dropped.
struct HandleGuard {
    api: &'static Api,
    ptr: *mut Handle,
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        // SAFETY: NULL or a handle from libheif, released once.
        if !self.ptr.is_null() {
            unsafe { (self.api.handle_release)(self.ptr) }
        }
    }
}

/// Releases a decoded image when dropped.
struct ImageGuard {
    api: &'static Api,
    ptr: *mut Image,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        // SAFETY: NULL or an image from libheif, released once.
        if !self.ptr.is_null() {
            unsafe { (self.api.image_release)(self.ptr) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_reported_with_its_name_and_the_loaders_words() {
        let Err(e) = Api::load("libheif-that-is-not-there.so.1") else {
            panic!("a library that does not exist was loaded");
        };
        assert_eq!(e.library, "libheif-that-is-not-there.so.1");
        let text = e.to_string();
        assert!(
            text.starts_with("libheif-that-is-not-there.so.1 could not be loaded ("),
            "{text}"
        );
        assert!(text.contains("cannot open shared object file"), "{text}");
        assert!(text.contains("LABELER_LIBHEIF"), "{text}");
    }

    #[test]
    fn sides_must_be_positive() {
        assert_eq!(sides(4032, 3024), Some((4032, 3024)));
        assert_eq!(sides(0, 10), None);
        assert_eq!(sides(10, -1), None);
    }
}
