//! `make demo`: the whole pipeline on the local stack, from upload to labels.

use crate::moto::repo_root;
use crate::stack::{Options, Stack};
use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use labeler_core::schema::{attr, label_from_attr, Status};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use worker::backend::Kind;

/// What the demo uploads: (key in the bucket, file under `samples/`): four
/// photographs of known content (`samples/photos/LICENSES.md`), under keys
/// with a space, unicode and a `+`, then a non-image and an empty file.
pub const UPLOADS: [(&str, Option<&str>); 6] = [
    ("my cat.png", Some("photos/chelsea.png")),
    ("café/λ+1 espresso.jpg", Some("photos/coffee.jpg")),
    ("trips/launch pad.jpg", Some("photos/rocket.jpg")),
    ("trips/summer palace.jpg", Some("photos/china.jpg")),
    ("notes/readme.txt", Some("notes.txt")),
    ("empty.jpg", None),
];

/// One row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Object key.
    pub key: String,
    /// Status, if a record exists.
    pub status: Option<Status>,
    /// Top labels with confidence, or the reason.
    pub detail: String,
}

/// Reads the record of each key.
pub async fn rows(stack: &Stack, keys: &[&str]) -> anyhow::Result<Vec<Row>> {
    let db = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let names = &stack.provisioned.names;
    let mut out = Vec::new();
    for key in keys {
        let item = labeler_core::store::get_image(&db, &names.table, &names.bucket, key).await?;
        out.push(row(key, item.as_ref()));
    }
    Ok(out)
}

fn row(key: &str, item: Option<&HashMap<String, AttributeValue>>) -> Row {
    let text = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let status = Status::parse(&text(attr::STATUS));
    let detail = match status {
        Some(Status::Labeled) => {
            let mut labels: Vec<_> = item
                .and_then(|i| i.get(attr::LABELS))
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(label_from_attr).collect())
                .unwrap_or_default();
            labels.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            labels
                .iter()
                .take(3)
                .map(|l| format!("{} {:.1}%", l.name, l.confidence))
                .collect::<Vec<_>>()
                .join(", ")
        }
        _ => text(attr::REASON),
    };
    Row {
        key: key.to_owned(),
        status,
        detail,
    }
}

/// Renders rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let kw = rows
        .iter()
        .map(|r| r.key.chars().count())
        .max()
        .unwrap_or(3)
        .max(5);
    let mut out = format!("{:<kw$}  {:<8}  TOP LABELS / REASON\n", "IMAGE", "STATUS");
    for r in rows {
        let status = r.status.map_or("MISSING", Status::as_str);
        let pad = kw - r.key.chars().count();
        out.push_str(&format!(
            "{}{}  {:<8}  {}\n",
            r.key,
            " ".repeat(pad),
            status,
            r.detail
        ));
    }
    out
}

/// The gallery's address when `--serve` names none.
pub const GALLERY_BIND: &str = "127.0.0.1:8080";

/// Runs the demo: stack up, uploads, wait with progress, table, then (with
/// `serve`) the web gallery on the demo's results until interrupted, stack down.
pub async fn run(opts: &Options, serve: Option<&str>) -> anyhow::Result<()> {
    println!(
        "Starting the local stack (moto, dispatcher under cargo lambda, local Batch executor)…"
    );
    let stack = Stack::up(opts).await?;
    let mut result = drive(&stack, opts.backend).await;
    if result.is_ok() {
        result = match serve {
            Some(bind) => gallery(&stack, bind).await,
            None => {
                println!(
                    "\nSee these labels in a web gallery: `make gallery` runs this demo, then serves http://{GALLERY_BIND}/ until Ctrl-C."
                );
                Ok(())
            }
        };
    }
    stack.down().await;
    result
}

/// Serves `labeler serve` on the demo's stack until Ctrl-C or SIGTERM.
async fn gallery(stack: &Stack, bind: &str) -> anyhow::Result<()> {
    let bin = repo_root().join("target/debug/labeler");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it with `make build`",
        bin.display()
    );
    println!();
    let mut child = tokio::process::Command::new(&bin)
        .args(["serve", "--bind", bind])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(stack.env())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        status = child.wait() => {
            let status = status?;
            anyhow::ensure!(status.success(), "labeler serve exited: {status}");
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = child.kill().await;
    println!("Gallery stopped; stopping the local stack.");
    Ok(())
}

/// Uploads [`UPLOADS`] into the stack's bucket.
pub async fn upload(stack: &Stack) -> anyhow::Result<()> {
    let s3 = crate::s3_client(&stack.sdk);
    let bucket = &stack.provisioned.names.bucket;
    for (key, file) in UPLOADS {
        let body = match file {
            Some(f) => std::fs::read(repo_root().join("samples").join(f))
                .with_context(|| format!("read samples/{f}"))?,
            None => Vec::new(),
        };
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .with_context(|| format!("upload {key}"))?;
        println!("  uploaded s3://{bucket}/{key}");
    }
    Ok(())
}

async fn drive(stack: &Stack, backend: Kind) -> anyhow::Result<()> {
    upload(stack).await?;
    let keys: Vec<&str> = UPLOADS.iter().map(|(k, _)| *k).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = usize::MAX;
    let rows = loop {
        let rows = rows(stack, &keys).await?;
        let done = rows
            .iter()
            .filter(|r| r.status.is_some_and(Status::is_terminal))
            .count();
        if done != last {
            println!("  {done}/{} images have a terminal record", keys.len());
            last = done;
        }
        if done == keys.len() {
            break rows;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every image reached a terminal record within 5 minutes:\n{}",
            table(&rows)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!();
    print!("{}", table(&rows));
    println!();
    println!("{}", source_note(backend));
    show_cli(stack, &rows);
    Ok(())
}

/// Where the demo's labels came from.
fn source_note(backend: Kind) -> &'static str {
    match backend {
        Kind::Local => {
            "Labeled by the worker's own model (EfficientNet-Lite0 on the CPU, no AWS call).\n\
             On AWS, Terraform's label_backend picks rekognition (the default), local or cascade."
        }
        Kind::Rekognition => {
            "Note: the local Rekognition (moto) returns the same fixed labels for every image;\n\
             on AWS the labels come from Amazon Rekognition DetectLabels."
        }
        Kind::Cascade => {
            "Labeled by the worker's own model, and by moto's DetectLabels (the same fixed labels\n\
             for every image) where the model was below 60%; on AWS that is Amazon Rekognition."
        }
    }
}

/// Shows the operator CLI on the demo's results, if it is built.
fn show_cli(stack: &Stack, rows: &[Row]) {
    let bin = repo_root().join("target/debug/labeler");
    if !bin.exists() {
        println!("(build the `labeler` CLI with `make build` to inspect results with it)");
        return;
    }
    let labeled = rows.iter().find(|r| r.status == Some(Status::Labeled));
    let bucket = &stack.provisioned.names.bucket;
    let mut commands = vec![vec!["status".to_owned()]];
    if let Some(row) = labeled {
        commands.push(vec!["get".into(), format!("s3://{bucket}/{}", row.key)]);
        // The detail reads "Name 99.9%, Other 98.0%".
        if let Some((label, _)) = row
            .detail
            .split(", ")
            .next()
            .and_then(|l| l.rsplit_once(' '))
        {
            commands.push(vec![
                "find".into(),
                label.to_owned(),
                "--min-confidence".into(),
                "50".into(),
            ]);
        }
    }
    for args in commands {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        println!("\n$ labeler {}", shown.join(" "));
        let out = std::process::Command::new(&bin)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(stack.env())
            .output();
        match out {
            Ok(o) => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                eprint!("{}", String::from_utf8_lossy(&o.stderr));
            }
            Err(e) => println!("could not run {}: {e}", bin.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_unicode_keys_and_shows_reasons() {
        let rows = vec![
            Row {
                key: "café/λ+1 sunset.jpg".into(),
                status: Some(Status::Labeled),
                detail: "Sky 99.0%".into(),
            },
            Row {
                key: "empty.jpg".into(),
                status: Some(Status::Skipped),
                detail: "object is empty (0 bytes)".into(),
            },
            Row {
                key: "x.png".into(),
                status: None,
                detail: String::new(),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        let status_column = |line: &str, word: &str| {
            let byte = line.find(word).unwrap();
            line[..byte].chars().count()
        };
        assert_eq!(status_column(lines[0], "STATUS"), 21);
        assert_eq!(status_column(lines[1], "LABELED"), 21);
        assert_eq!(status_column(lines[2], "SKIPPED"), 21);
        assert_eq!(status_column(lines[3], "MISSING"), 21);
        assert!(lines[1].ends_with("Sky 99.0%"));
        assert!(lines[2].ends_with("object is empty (0 bytes)"));
    }
}
