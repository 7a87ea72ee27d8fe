//! Peak memory while the worker converts large images: the release worker
//! at `--concurrency 8` on a chunk of JPEGs Rekognition cannot read as they
//! are (over 15 MB), once with the default conversion bound
//! (`LABELER_CONVERT_CONCURRENCY=2`) and once without one (8), against the
//! stand-in (DetectLabels at once; it accepts the converted bytes).
//! Peak RSS is compared with the job definition's container memory.

use crate::process::{repo_root, run_measured};
use crate::scenario_worker::{chunk, command, prepare};
use crate::standin::{op, Settings, StandIn};
use anyhow::{ensure, Context};
use serde::Serialize;
use std::path::Path;

/// The job definition's default container memory (`worker_memory_mib`).
pub const CONTAINER_BYTES: u64 = 2048 * 1024 * 1024;

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertRun {
    /// `LABELER_CONVERT_CONCURRENCY`.
    pub convert_concurrency: usize,
    /// `--concurrency`.
    pub concurrency: usize,
    /// The images: (description, bytes, width, height).
    pub images: Vec<(String, usize, u32, u32)>,
    /// Process wall time, seconds.
    pub wall_s: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
    /// `peak_rss_bytes / CONTAINER_BYTES`.
    pub ratio_to_container: f64,
    /// DetectLabels calls (each with converted bytes).
    pub detect_labels_calls: u64,
}

/// A noisy photo-sized JPEG (noise keeps it large, as a detailed photo at
/// high quality is).
fn noisy_jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state & 0x3f) as u8;
        image::Rgb([
            ((x * 255 / width) as u8).saturating_add(n),
            ((y * 255 / height) as u8).saturating_add(n / 2),
            128u8.saturating_add(n),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .expect("encoding to memory");
    out
}

/// Runs the worker on four large JPEGs and four 48-megapixel ones, per
/// conversion bound in `bounds`.
pub async fn runs(worker: &Path, bounds: &[usize]) -> anyhow::Result<Vec<ConvertRun>> {
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    eprintln!("bench: generating large JPEGs …");
    let large = noisy_jpeg(6000, 4500, 98);
    let mp48 = noisy_jpeg(8000, 6000, 92);
    let images = vec![
        ("27-megapixel JPEG".to_owned(), large.len(), 6000, 4500),
        ("48-megapixel JPEG".to_owned(), mp48.len(), 8000, 6000),
    ];
    let mut out = Vec::new();
    for &bound in bounds {
        let standin = StandIn::start(Settings::default()).await?;
        let run = format!("convert-b{bound}");
        let refs = chunk(&run, 8);
        let parameter = prepare(&standin, &run, std::slice::from_ref(&refs));
        for (i, image) in refs.iter().enumerate() {
            let body = if i % 2 == 0 { &large } else { &mp48 };
            standin.put_object(&image.bucket, &image.key, body.clone());
        }
        let log = std::fs::File::create(scratch.join(format!("{run}.log")))?;
        let mut cmd = command(worker, &parameter, 8, &standin, log);
        cmd.env("LABELER_CONVERT_CONCURRENCY", bound.to_string());
        let done = run_measured(cmd)
            .await
            .with_context(|| format!("run {}", worker.display()))?;
        let stats = standin.stats();
        let detect = stats.get(op::DETECT_LABELS).cloned().unwrap_or_default();
        let labeled = stats.get(op::TRANSACT_WRITE_ITEMS).map_or(0, |s| s.calls);
        ensure!(
            done.code == Some(0) && labeled == 8,
            "conversion run {run} exited with {:?} after {labeled} of 8 labelings; see target/bench/{run}.log",
            done.code
        );
        out.push(ConvertRun {
            convert_concurrency: bound,
            concurrency: 8,
            images: images.clone(),
            wall_s: done.wall.as_secs_f64(),
            peak_rss_bytes: done.peak_rss_bytes,
            ratio_to_container: done.peak_rss_bytes as f64 / CONTAINER_BYTES as f64,
            detect_labels_calls: detect.calls,
        });
    }
    Ok(out)
}
