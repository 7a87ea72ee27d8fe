//! `labeler get s3://BUCKET/KEY`.

use crate::args::GetArgs;
use crate::aws::table_error;
use crate::output::{fields, one_line, or_dash, table};
use crate::record::Record;
use crate::Context;
use anyhow::bail;
use labeler_core::store::image_key;
use std::io::Write;

/// Prints one image's record.
pub async fn run(ctx: &Context, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table_name = ctx.table()?;
    let key = args.uri.object_key().map_err(anyhow::Error::msg)?;
    let item = ctx
        .dynamodb()
        .get_item()
        .table_name(table_name)
        .set_key(Some(image_key(&args.uri.bucket, key)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| table_error(table_name, e))?
        .item;
    let Some(record) = item.as_ref().and_then(Record::from_item) else {
        bail!(
            "no record for {} in table {table_name:?}: it was never uploaded under that exact key, or it was deleted",
            args.uri
        );
    };
    if args.format.json {
        serde_json::to_writer_pretty(&mut *out, &record)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&record).as_bytes())?;
    }
    Ok(())
}

/// The human view of a record.
pub fn render(r: &Record) -> String {
    let job = match (&r.job_id, &r.array_index) {
        (Some(id), Some(i)) => format!("{id} (array child {i})"),
        (Some(id), None) => id.clone(),
        _ => "-".into(),
    };
    let mut pairs = vec![
        ("image", r.uri.clone()),
        ("status", r.status.clone()),
        ("reason", or_dash(r.reason.as_deref())),
        ("job", job),
        ("job name", or_dash(r.job_name.as_deref())),
        ("attempts", r.attempts.map_or("-".into(), |a| a.to_string())),
        ("queued at", or_dash(r.queued_at.as_deref())),
        ("updated at", or_dash(r.updated_at.as_deref())),
        ("label model", or_dash(r.label_model_version.as_deref())),
        ("etag", or_dash(r.etag.as_deref())),
    ];
    if let Some(v) = &r.version_id {
        pairs.push(("version id", v.clone()));
    }
    if let Some(note) = &r.conversion {
        pairs.push(("conversion", note.clone()));
    }
    if let Some(note) = &r.label_note {
        pairs.push(("note", note.clone()));
    }
    if let Some(from) = &r.reused_from {
        pairs.push(("labels", format!("reused from {from} (same content)")));
    }
    let mut text = fields(&pairs);
    if !r.labels.is_empty() {
        text.push('\n');
        let rows: Vec<Vec<String>> = r
            .labels
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    format!("{:.1}", l.confidence),
                    one_line(&l.parents.join(", "), 60),
                ]
            })
            .collect();
        text.push_str(&table(&["LABEL", "CONFIDENCE", "PARENTS"], &rows, &[1]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_record_says_where_its_labels_come_from() {
        let mut record = Record {
            uri: "s3://b/moved/a.jpg".into(),
            bucket: "b".into(),
            key: "moved/a.jpg".into(),
            status: "LABELED".into(),
            reason: None,
            labels: vec![],
            label_model_version: Some("3.0".into()),
            reused_from: Some("s3://b/a.jpg".into()),
            conversion: None,
            label_note: None,
            job_id: None,
            job_name: None,
            array_index: None,
            attempts: Some(1),
            queued_at: None,
            updated_at: None,
            revision: None,
            version_id: None,
            etag: None,
            size: None,
        };
        let text = render(&record);
        assert!(
            text.contains("labels       reused from s3://b/a.jpg (same content)"),
            "{text}"
        );
        record.reused_from = None;
        assert!(!render(&record).contains("reused"));
        record.conversion = Some("converted from WebP, 4032×3024 → 3024×2268".into());
        assert!(
            render(&record).contains("conversion   converted from WebP, 4032×3024 → 3024×2268"),
            "{}",
            render(&record)
        );
        record.label_note = Some("local labels only: budget spent".into());
        assert!(
            render(&record).contains("note         local labels only: budget spent"),
            "{}",
            render(&record)
        );
    }
}
