//! Peak memory while the worker converts large images: the release worker
//! at `--concurrency 8` on a chunk of JPEGs Rekognition cannot read as they
//! are (over 15 MB), once with the default conversion bound
//! (`LABELER_CONVERT_CONCURRENCY=2`) and once without one (8), then on a
//! chunk of 48-megapixel HEICs (decoded with libheif) with the default
//! bound, against the stand-in (DetectLabels at once; it accepts the
//! converted bytes). Peak RSS is compared with the job definition's
//! container memory.

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
    /// The chunk in words, e.g. "4 × 27-megapixel JPEG and 4 × 48-megapixel
    /// JPEG".
    pub chunk: String,
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

/// A noisy photo-sized picture (noise keeps it large once encoded, as a
/// detailed photo at high quality is).
fn noisy_picture(width: u32, height: u32) -> image::RgbImage {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state & 0x3f) as u8;
        image::Rgb([
            ((x * 255 / width) as u8).saturating_add(n),
            ((y * 255 / height) as u8).saturating_add(n / 2),
            128u8.saturating_add(n),
        ])
    })
}

/// [`noisy_picture`] as a JPEG.
fn noisy_jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    let img = noisy_picture(width, height);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .expect("encoding to memory");
    out
}

/// A 48-megapixel HEIC of [`noisy_picture`], encoded by libheif's
/// `heif-enc` (x265) and kept in `scratch`: encoding it takes minutes.
fn heic_48mp(scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let path = scratch.join("48-megapixel.heic");
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
    }
    eprintln!("bench: encoding a 48-megapixel HEIC with heif-enc (minutes) …");
    let png = scratch.join("48-megapixel.png");
    noisy_picture(8000, 6000)
        .save(&png)
        .with_context(|| format!("write {}", png.display()))?;
    let status = std::process::Command::new("heif-enc")
        .args(["--quality", "50", "--output"])
        .arg(&path)
        .arg(&png)
        .stdout(std::process::Stdio::null())
        .status()
        .context("run heif-enc (Debian's libheif-examples; `make heif` installs it)")?;
    std::fs::remove_file(&png).ok();
    ensure!(status.success(), "heif-enc failed: {status}");
    Ok(std::fs::read(&path)?)
}

/// Runs the worker on four large JPEGs and four 48-megapixel ones, per
/// conversion bound in `bounds`, then on eight 48-megapixel HEICs with the
/// default bound (2).
pub async fn runs(worker: &Path, bounds: &[usize]) -> anyhow::Result<Vec<ConvertRun>> {
    let scratch = repo_root().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    eprintln!("bench: generating large JPEGs …");
    let large = noisy_jpeg(6000, 4500, 98);
    let mp48 = noisy_jpeg(8000, 6000, 92);
    let jpegs = vec![
        ("27-megapixel JPEG".to_owned(), large.len(), 6000, 4500),
        ("48-megapixel JPEG".to_owned(), mp48.len(), 8000, 6000),
    ];
    let heic = heic_48mp(&scratch)?;
    let heics = vec![("48-megapixel HEIC".to_owned(), heic.len(), 8000, 6000)];
    /// One run: its name, its conversion bound, the files its chunk cycles
    /// through, and their descriptions.
    struct Case<'a> {
        run: String,
        bound: usize,
        bodies: Vec<&'a Vec<u8>>,
        images: &'a [(String, usize, u32, u32)],
    }
    let mut cases: Vec<Case> = bounds
        .iter()
        .map(|&bound| Case {
            run: format!("convert-b{bound}"),
            bound,
            bodies: vec![&large, &mp48],
            images: &jpegs,
        })
        .collect();
    cases.push(Case {
        run: "convert-heic-b2".to_owned(),
        bound: 2,
        bodies: vec![&heic],
        images: &heics,
    });
    let mut out = Vec::new();
    for Case {
        run,
        bound,
        bodies,
        images,
    } in cases
    {
        let standin = StandIn::start(Settings::default()).await?;
        let refs = chunk(&run, 8);
        let parameter = prepare(&standin, &run, std::slice::from_ref(&refs));
        for (i, image) in refs.iter().enumerate() {
            let body = bodies[i % bodies.len()];
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
            chunk: images
                .iter()
                .map(|(what, ..)| format!("{} × {what}", 8 / images.len()))
                .collect::<Vec<_>>()
                .join(" and "),
            images: images.to_vec(),
            wall_s: done.wall.as_secs_f64(),
            peak_rss_bytes: done.peak_rss_bytes,
            ratio_to_container: done.peak_rss_bytes as f64 / CONTAINER_BYTES as f64,
            detect_labels_calls: detect.calls,
        });
    }
    Ok(out)
}
