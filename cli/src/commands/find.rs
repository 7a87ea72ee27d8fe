//! `labeler find LABEL`: a Query on the label index, never a Scan.

use crate::args::FindArgs;
use crate::aws::table_error;
use crate::output::table;
use crate::record::{Hit, Item};
use crate::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use labeler_core::schema::{label_index_value, LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK};
use std::io::Write;

/// Prints images carrying a label, most confident first.
pub async fn run(ctx: &Context, args: &FindArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table_name = ctx.table()?;
    let hits = query(ctx, table_name, args).await?;
    if args.format.json {
        serde_json::to_writer_pretty(&mut *out, &hits)?;
        writeln!(out)?;
    } else if args.format.csv {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["uri", "bucket", "key", "label", "confidence"])?;
        for h in &hits {
            w.write_record([
                h.uri.as_str(),
                &h.bucket,
                &h.key,
                &h.label,
                &h.confidence.to_string(),
            ])?;
        }
        w.flush()?;
    } else if hits.is_empty() {
        writeln!(
            out,
            "no image carries the label {:?} with confidence >= {}",
            args.label, args.min_confidence
        )?;
    } else {
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                vec![
                    format!("{:.1}", h.confidence),
                    h.label.clone(),
                    h.uri.clone(),
                ]
            })
            .collect();
        out.write_all(table(&["CONFIDENCE", "LABEL", "IMAGE"], &rows, &[0]).as_bytes())?;
    }
    Ok(())
}

/// Reads pages of the index until `limit` hits or the end.
async fn query(ctx: &Context, table_name: &str, args: &FindArgs) -> anyhow::Result<Vec<Hit>> {
    let mut hits = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let remaining = args.limit - hits.len() as u64;
        let page_size = (args.page_size as u64).min(remaining) as i32;
        let page = ctx
            .dynamodb()
            .query()
            .table_name(table_name)
            .index_name(LABEL_INDEX)
            .key_condition_expression("#label = :label AND #confidence >= :min")
            .expression_attribute_names("#label", LABEL_INDEX_PK)
            .expression_attribute_names("#confidence", LABEL_INDEX_SK)
            .expression_attribute_values(
                ":label",
                AttributeValue::S(label_index_value(&args.label)),
            )
            .expression_attribute_values(":min", AttributeValue::N(args.min_confidence.to_string()))
            .scan_index_forward(false)
            .limit(page_size)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| table_error(table_name, e))?;
        hits.extend(page.items().iter().filter_map(Hit::from_item));
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() && (hits.len() as u64) < args.limit => start = Some(key),
            _ => break,
        }
    }
    hits.truncate(args.limit as usize);
    Ok(hits)
}
