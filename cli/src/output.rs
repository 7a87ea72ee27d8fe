//! Human output: aligned tables and key/value blocks.

use std::fmt::Write as _;

/// Renders rows under headers, columns padded to their widest cell.
/// Numeric-looking columns could be right-aligned; `right` names them.
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(width(cell));
            if right.contains(&i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if i != last {
                    l.push_str(&" ".repeat(pad));
                }
            }
            if i != last {
                l.push_str("  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Renders `name  value` lines, names padded to the longest.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{k:<w$}  {v}");
    }
    out
}

/// Display width, counted in characters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// `-` for a missing value.
pub fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// One line, at most `max` characters, for table cells.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let t = table(
            &["CONFIDENCE", "IMAGE"],
            &[
                vec!["99.1".into(), "s3://b/sunset.jpg".into()],
                vec!["7.25".into(), "s3://b/é.png".into()],
            ],
            &[0],
        );
        assert_eq!(
            t,
            "CONFIDENCE  IMAGE\n      99.1  s3://b/sunset.jpg\n      7.25  s3://b/é.png\n"
        );
    }

    #[test]
    fn fields_are_aligned() {
        assert_eq!(
            fields(&[("status", "LABELED".into()), ("job", "j-1".into())]),
            "status  LABELED\njob     j-1\n"
        );
    }

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
    }
}
