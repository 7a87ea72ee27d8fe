//! CloudWatch metrics as log lines: the embedded metric format (EMF).
//!
//! The dispatcher and the worker write one JSON object per line to stdout;
//! CloudWatch Logs (the Lambda's log group, and the Batch worker's through
//! the `awslogs` driver) recognises the `_aws` member and turns the line into
//! metrics, with no agent and no `PutMetricData` call. The line stays a
//! searchable log event too.
//!
//! The format, as specified in the CloudWatch user guide ("Specification:
//! Embedded metric format"):
//!
//! ```json
//! {"_aws": {"Timestamp": 1700000000000,
//!           "CloudWatchMetrics": [{"Namespace": "ImageLabeler",
//!                                  "Dimensions": [["Table"]],
//!                                  "Metrics": [{"Name": "ImagesLabeled", "Unit": "Count"}]}]},
//!  "Table": "photos-results", "ImagesLabeled": 12}
//! ```
//!
//! Every dimension and metric named in a directive must be a member of the
//! root object; a metric's value is a number or an array of at most 100
//! numbers (CloudWatch computes percentiles from the values); a directive
//! holds at most 100 metrics and a dimension set at most 30 dimensions.
//! [`MetricLine::render`] keeps those limits by splitting a line, and
//! [`check`] verifies any line against them, so tests hold the writer to
//! the specification rather than to itself.
//!
//! No crate is used: the maintained EMF crates bring the `metrics` facade
//! and a global recorder, while both programs here emit a handful of
//! counters they already sum, at moments they choose (an invocation's end,
//! a worker's flush).

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every metric of image-labeler.
pub const NAMESPACE: &str = "ImageLabeler";

/// The one dimension every metric carries: the results table, which names
/// the deployment. Keys and buckets are never dimensions (each distinct
/// value would be a metric of its own).
pub const TABLE_DIMENSION: &str = "Table";

/// Most values one metric may carry in a line (the specification's limit).
pub const MAX_VALUES: usize = 100;

/// Most metrics one directive may name (the specification's limit).
pub const MAX_METRICS: usize = 100;

/// Most dimensions in one dimension set (the specification's limit).
pub const MAX_DIMENSIONS: usize = 30;

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of events.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
    /// A duration in seconds.
    Seconds,
    /// A rate per second.
    CountPerSecond,
}

impl Unit {
    /// The unit as CloudWatch spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// One metric of a line: a value, or several (latencies).
#[derive(Debug, Clone, PartialEq)]
struct Metric {
    name: &'static str,
    unit: Unit,
    values: Vec<f64>,
}

/// Metrics sharing one timestamp and one set of dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine {
    timestamp_millis: u64,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<Metric>,
}

impl MetricLine {
    /// A line of metrics at `timestamp_millis` (Unix epoch) for the
    /// deployment whose results table is `table`.
    pub fn new(timestamp_millis: u64, table: &str) -> Self {
        Self {
            timestamp_millis,
            dimensions: vec![(TABLE_DIMENSION, table.to_owned())],
            metrics: Vec::new(),
        }
    }

    /// Adds a dimension beside `Table` (a small, fixed set of values only).
    pub fn dimension(mut self, name: &'static str, value: &str) -> Self {
        self.dimensions.push((name, value.to_owned()));
        self
    }

    /// Adds a count.
    pub fn count(self, name: &'static str, value: usize) -> Self {
        self.value(name, Unit::Count, value as f64)
    }

    /// Adds one value.
    pub fn value(self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.values(name, unit, vec![value])
    }

    /// Adds a metric with several values (CloudWatch aggregates them, so
    /// percentiles are computed over every value). Nothing is added for no
    /// values, and non-finite values are dropped.
    pub fn values(mut self, name: &'static str, unit: Unit, values: Vec<f64>) -> Self {
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if !values.is_empty() {
            self.metrics.push(Metric { name, unit, values });
        }
        self
    }

    /// The line's JSON objects, one per output line: several when a metric
    /// has more than [`MAX_VALUES`] values or the line more than
    /// [`MAX_METRICS`] metrics. Empty when the line has no metric.
    pub fn render(&self) -> Vec<String> {
        let mut pieces: Vec<Vec<(&Metric, &[f64])>> = Vec::new();
        let mut round = 0;
        loop {
            let piece: Vec<(&Metric, &[f64])> = self
                .metrics
                .iter()
                .filter_map(|m| {
                    let start = round * MAX_VALUES;
                    (start < m.values.len())
                        .then(|| (m, &m.values[start..m.values.len().min(start + MAX_VALUES)]))
                })
                .collect();
            if piece.is_empty() {
                break;
            }
            for group in piece.chunks(MAX_METRICS) {
                pieces.push(group.to_vec());
            }
            round += 1;
        }
        pieces.iter().map(|piece| self.object(piece)).collect()
    }

    fn object(&self, metrics: &[(&Metric, &[f64])]) -> String {
        let mut root = Map::new();
        for (name, value) in &self.dimensions {
            root.insert((*name).to_owned(), Value::String(value.clone()));
        }
        let definitions: Vec<Value> = metrics
            .iter()
            .map(|(m, values)| {
                let number = |v: &f64| number(m.unit, *v);
                root.insert(
                    m.name.to_owned(),
                    match values {
                        [one] => number(one),
                        many => Value::Array(many.iter().map(number).collect()),
                    },
                );
                json!({ "Name": m.name, "Unit": m.unit.as_str() })
            })
            .collect();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": self.timestamp_millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root).to_string()
    }
}

/// A metric value as JSON: a count that is a whole number prints as an
/// integer (`5`, not `5.0`); anything else as a float.
fn number(unit: Unit, value: f64) -> Value {
    /// Past 2^53 an f64 no longer holds every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if unit == Unit::Count && value.fract() == 0.0 && value.abs() <= EXACT {
        Value::from(value as i64)
    } else {
        json!(value)
    }
}

/// Writes `lines` to stdout, one line (one log event) each, and flushes:
/// Lambda and the Batch job's `awslogs` driver send stdout to CloudWatch
/// Logs, where each line becomes a log event and its metrics.
///
/// Write errors are ignored: a closed stdout loses metrics, never the work
/// they count.
pub fn emit(lines: &[String]) {
    emit_to(&mut std::io::stdout().lock(), lines);
}

/// [`emit`] to any writer.
fn emit_to(out: &mut impl std::io::Write, lines: &[String]) {
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// How a line breaks the embedded metric format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    /// A required member is missing or of the wrong type.
    #[error("{0} is missing or not {1}")]
    Required(String, &'static str),
    /// A name is empty or longer than 255 characters, or a namespace has
    /// whitespace.
    #[error("{0:?} is not a valid {1}")]
    BadName(String, &'static str),
    /// A directive names a member the root object does not have.
    #[error("{0:?} is named in a directive but is not a member of the root")]
    MissingTarget(String),
    /// A metric value is not a number or an array of numbers.
    #[error("the value of metric {0:?} is not a number or an array of at most 100 numbers")]
    BadValue(String),
    /// A limit of the specification is exceeded.
    #[error("{0} exceeds the limit of {1}")]
    TooMany(&'static str, usize),
    /// A unit CloudWatch does not know.
    #[error("{0:?} is not a CloudWatch unit")]
    BadUnit(String),
}

/// CloudWatch's units (`StandardUnit`).
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one log line against the embedded metric format specification:
/// the `_aws` metadata with an integer `Timestamp` and a `CloudWatchMetrics`
/// array of directives, each with a `Namespace`, `Dimensions` (arrays of at
/// most 30 member names) and `Metrics` (at most 100 definitions with a
/// `Name` and an optional known `Unit`); every named member present at the
/// root, dimensions as strings and metrics as a number or an array of at
/// most 100 numbers. Returns the metric names the line defines.
pub fn check(line: &str) -> Result<Vec<String>, Violation> {
    let root: Value =
        serde_json::from_str(line).map_err(|e| Violation::NotAnObject(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| Violation::NotAnObject(line.chars().take(80).collect()))?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or(Violation::Required("_aws".into(), "an object"))?;
    aws.get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or(Violation::Required("_aws.Timestamp".into(), "an integer"))?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or(Violation::Required(
            "_aws.CloudWatchMetrics".into(),
            "an array",
        ))?;
    let mut names = Vec::new();
    for directive in directives {
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or(Violation::Required("Namespace".into(), "a string"))?;
        if namespace.is_empty()
            || namespace.len() > 255
            || namespace.chars().any(char::is_whitespace)
        {
            return Err(Violation::BadName(namespace.into(), "namespace"));
        }
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or(Violation::Required("Dimensions".into(), "an array"))?;
        for set in sets {
            let set = set.as_array().ok_or(Violation::Required(
                "a dimension set".into(),
                "an array of names",
            ))?;
            if set.len() > MAX_DIMENSIONS {
                return Err(Violation::TooMany("a dimension set", MAX_DIMENSIONS));
            }
            for name in set {
                let name = name
                    .as_str()
                    .ok_or(Violation::Required("a dimension name".into(), "a string"))?;
                match root.get(name) {
                    Some(Value::String(_)) => {}
                    Some(_) => return Err(Violation::Required(name.into(), "a string")),
                    None => return Err(Violation::MissingTarget(name.into())),
                }
            }
        }
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or(Violation::Required("Metrics".into(), "an array"))?;
        if metrics.len() > MAX_METRICS {
            return Err(Violation::TooMany("a directive's metrics", MAX_METRICS));
        }
        for metric in metrics {
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .ok_or(Violation::Required("Name".into(), "a string"))?;
            if name.is_empty() || name.len() > 255 {
                return Err(Violation::BadName(name.into(), "metric name"));
            }
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().unwrap_or_default();
                if !UNITS.contains(&unit) {
                    return Err(Violation::BadUnit(unit.into()));
                }
            }
            let valid = match root.get(name) {
                None => return Err(Violation::MissingTarget(name.into())),
                Some(Value::Number(_)) => true,
                Some(Value::Array(values)) => {
                    values.len() <= MAX_VALUES && values.iter().all(Value::is_number)
                }
                Some(_) => false,
            };
            if !valid {
                return Err(Violation::BadValue(name.into()));
            }
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 1_764_460_800_000;

    #[test]
    fn a_line_names_its_namespace_table_and_metrics_as_the_specification_requires() {
        let lines = MetricLine::new(AT, "photos-results")
            .count("ImagesLabeled", 12)
            .value("ChunkDuration", Unit::Seconds, 3.5)
            .render();

        assert_eq!(lines.len(), 1);
        assert_eq!(
            check(&lines[0]).unwrap(),
            ["ImagesLabeled", "ChunkDuration"]
        );
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["Table"], "photos-results");
        assert_eq!(v["ImagesLabeled"], 12.0);
        assert_eq!(v["_aws"]["Timestamp"], AT);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ImageLabeler");
        assert_eq!(directive["Dimensions"], json!([["Table"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "ChunkDuration", "Unit": "Seconds"})
        );
    }

    #[test]
    fn more_than_a_hundred_values_are_split_over_lines_that_each_pass_the_check() {
        let latencies: Vec<f64> = (0..250).map(f64::from).collect();
        let lines = MetricLine::new(AT, "t")
            .count("DetectLabelsCalls", 250)
            .values("DetectLabelsLatency", Unit::Milliseconds, latencies)
            .render();

        assert_eq!(lines.len(), 3);
        let mut seen = Vec::new();
        for line in &lines {
            check(line).unwrap();
            let v: Value = serde_json::from_str(line).unwrap();
            match &v["DetectLabelsLatency"] {
                Value::Array(values) => seen.extend(values.iter().map(|x| x.as_f64().unwrap())),
                one => seen.push(one.as_f64().unwrap()),
            }
        }
        assert_eq!(seen, (0..250).map(f64::from).collect::<Vec<_>>());
        // The count is reported once, not once per line.
        let counted = lines
            .iter()
            .filter(|l| l.contains("\"DetectLabelsCalls\":"))
            .count();
        assert_eq!(counted, 1, "the count is in the first line only");
    }

    #[test]
    fn an_extra_dimension_joins_the_table_in_one_dimension_set() {
        let line = MetricLine::new(AT, "t")
            .dimension("ReasonClass", "not_an_image")
            .count("ImagesFailed", 2)
            .render()
            .remove(0);

        check(&line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Table", "ReasonClass"]])
        );
        assert_eq!(v["ReasonClass"], "not_an_image");
    }

    #[test]
    fn a_line_without_metrics_renders_nothing_and_non_finite_values_are_dropped() {
        assert!(MetricLine::new(AT, "t").render().is_empty());
        assert!(MetricLine::new(AT, "t")
            .values("Latency", Unit::Milliseconds, vec![f64::NAN, f64::INFINITY])
            .render()
            .is_empty());
    }

    #[test]
    fn the_check_refuses_lines_that_break_the_specification() {
        let good = MetricLine::new(AT, "t").count("A", 1).render().remove(0);
        let mut v: Value = serde_json::from_str(&good).unwrap();
        v.as_object_mut().unwrap().remove("A");
        assert_eq!(
            check(&v.to_string()),
            Err(Violation::MissingTarget("A".into()))
        );

        let mut v: Value = serde_json::from_str(&good).unwrap();
        v["_aws"]["Timestamp"] = json!("yesterday");
        assert!(matches!(
            check(&v.to_string()),
            Err(Violation::Required(..))
        ));

        let mut v: Value = serde_json::from_str(&good).unwrap();
        v["A"] = json!("many");
        assert_eq!(check(&v.to_string()), Err(Violation::BadValue("A".into())));

        let mut v: Value = serde_json::from_str(&good).unwrap();
        v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Requests");
        assert_eq!(
            check(&v.to_string()),
            Err(Violation::BadUnit("Requests".into()))
        );

        let mut v: Value = serde_json::from_str(&good).unwrap();
        v.as_object_mut().unwrap().remove("Table");
        assert_eq!(
            check(&v.to_string()),
            Err(Violation::MissingTarget("Table".into()))
        );

        let mut v: Value = serde_json::from_str(&good).unwrap();
        v["A"] = json!((0..101).collect::<Vec<_>>());
        assert_eq!(check(&v.to_string()), Err(Violation::BadValue("A".into())));

        assert!(matches!(
            check("{\"level\":\"INFO\"}"),
            Err(Violation::Required(..))
        ));
        assert!(matches!(
            check("plain text"),
            Err(Violation::NotAnObject(_))
        ));
    }

    #[test]
    fn emit_writes_one_line_each() {
        let mut out = Vec::new();
        emit_to(&mut out, &["{\"a\":1}".to_owned(), "{\"b\":2}".to_owned()]);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn whole_counts_print_as_integers_and_other_values_as_floats() {
        let line = MetricLine::new(AT, "t")
            .count("Images", 5)
            .value("Half", Unit::Count, 2.5)
            .values("Counts", Unit::Count, vec![1.0, 2.0])
            .value("Took", Unit::Seconds, 3.0)
            .render()
            .remove(0);

        check(&line).unwrap();
        assert!(
            line.contains("\"Images\":5,") || line.contains("\"Images\":5}"),
            "{line}"
        );
        assert!(line.contains("\"Counts\":[1,2]"), "{line}");
        assert!(line.contains("\"Half\":2.5"), "{line}");
        assert!(line.contains("\"Took\":3.0"), "{line}");
    }
}
