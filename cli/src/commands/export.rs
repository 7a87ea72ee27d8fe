//! `labeler export`: every image record, streamed page by page.

use crate::args::{ExportArgs, ExportFormat};
use crate::aws::ImageScan;
use crate::record::Record;
use crate::Context;
use anyhow::Context as _;
use std::io::Write;

/// Writes every image record as CSV or JSON Lines, one page at a time:
/// memory stays flat however large the table is.
pub async fn run(ctx: &Context, args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table_name = ctx.table()?;
    let mut file;
    let sink: &mut dyn Write = match &args.output {
        Some(path) => {
            file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            &mut file
        }
        None => out,
    };
    let scan = ImageScan {
        table: table_name,
        projection: &[],
        page_size: Some(args.page_size),
    };
    let mut rows = 0u64;
    match args.format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(sink);
            w.write_record(Record::CSV_HEADER)?;
            scan.run(ctx.dynamodb(), None, |items| {
                for r in items.iter().filter_map(Record::from_item) {
                    w.write_record(r.csv_row())?;
                    rows += 1;
                }
                w.flush()?;
                Ok(())
            })
            .await?;
        }
        ExportFormat::Json => {
            scan.run(ctx.dynamodb(), None, |items| {
                for r in items.iter().filter_map(Record::from_item) {
                    serde_json::to_writer(&mut *sink, &r)?;
                    sink.write_all(b"\n")?;
                    rows += 1;
                }
                sink.flush()?;
                Ok(())
            })
            .await?;
        }
    }
    if let Some(path) = &args.output {
        eprintln!("{rows} records written to {}", path.display());
    }
    Ok(())
}
