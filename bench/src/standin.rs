//! One loopback HTTP server that stands in for the AWS APIs the dispatcher
//! and the worker call, so that the real AWS SDK for Rust clients can be
//! measured against it through the standard `AWS_ENDPOINT_URL` /
//! `endpoint_url(...)`.
//!
//! | service | protocol | operations |
//! |---|---|---|
//! | Batch | REST-JSON, `POST /v1/submitjob` | `SubmitJob` |
//! | DynamoDB | awsJson1_0, `X-Amz-Target: DynamoDB_20120810.<Op>` | `PutItem`, `GetItem`, `UpdateItem`, `DeleteItem`, `Query`, `TransactWriteItems`, `BatchWriteItem` |
//! | Rekognition | awsJson1_1, `X-Amz-Target: RekognitionService.DetectLabels` | `DetectLabels` |
//! | S3 | REST-XML, path style `/<bucket>/<key>` | `PutObject`, `GetObject` |
//!
//! What it does like the real services, because the measurements depend on it:
//!
//! * **latency**: every answer waits a configurable fixed time (per
//!   operation if wanted), throttled answers included;
//! * **throttling**: `SubmitJob` is capped by a token bucket (default 50
//!   transactions per second, AWS Batch's documented per-account limit) and
//!   answers HTTP 429 `TooManyRequestsException` above it; `DetectLabels`
//!   can be capped too (rate and burst configurable) and then answers HTTP
//!   400 `ProvisionedThroughputExceededException` (or HTTP 500
//!   `ThrottlingException`). Both codes are in the SDK's list of throttling
//!   errors, so its standard retry strategy backs off and retries them as it
//!   would against AWS;
//! * **state**: DynamoDB items and S3 objects are kept in memory, so a
//!   record the dispatcher claims is what the worker reads back, and a
//!   manifest the dispatcher writes is what a test reads to count images;
//! * **accounting**: it counts calls and throttled answers per operation, and
//!   the read and write request units DynamoDB would charge for each call
//!   (item sizes by DynamoDB's sizing rules, approximated), and when each
//!   `DetectLabels` was accepted or throttled ([`RateSeries`]).
//!
//! What it does **not** do: it evaluates no condition expression (every
//! conditional write is accepted), it applies update expressions only in
//! their simple form (`SET a = :v, …` and `REMOVE a, …`), it answers a Query
//! only for `pk = :v [AND begins_with(sk, :v)]`, and it checks no signature.
//! It measures the pipeline's own overhead, not DynamoDB semantics: the
//! conditional writes are tested against moto and with injected faults
//! elsewhere in the workspace.

use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Operation names as the stand-in counts them.
pub mod op {
    /// Batch `SubmitJob`.
    pub const SUBMIT_JOB: &str = "Batch.SubmitJob";
    /// Rekognition `DetectLabels`.
    pub const DETECT_LABELS: &str = "Rekognition.DetectLabels";
    /// S3 `PutObject`.
    pub const PUT_OBJECT: &str = "S3.PutObject";
    /// S3 `GetObject`.
    pub const GET_OBJECT: &str = "S3.GetObject";
    /// DynamoDB `PutItem`.
    pub const PUT_ITEM: &str = "DynamoDB.PutItem";
    /// DynamoDB `GetItem`.
    pub const GET_ITEM: &str = "DynamoDB.GetItem";
    /// DynamoDB `UpdateItem`.
    pub const UPDATE_ITEM: &str = "DynamoDB.UpdateItem";
    /// DynamoDB `DeleteItem`.
    pub const DELETE_ITEM: &str = "DynamoDB.DeleteItem";
    /// DynamoDB `Query`.
    pub const QUERY: &str = "DynamoDB.Query";
    /// DynamoDB `TransactWriteItems`.
    pub const TRANSACT_WRITE_ITEMS: &str = "DynamoDB.TransactWriteItems";
    /// DynamoDB `BatchWriteItem`.
    pub const BATCH_WRITE_ITEM: &str = "DynamoDB.BatchWriteItem";
}

/// How a capped `DetectLabels` refuses a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectThrottle {
    /// HTTP 400 `ProvisionedThroughputExceededException`: the account's
    /// transactions-per-second quota is exceeded.
    ProvisionedThroughputExceeded,
    /// HTTP 500 `ThrottlingException`: Rekognition is temporarily unable to
    /// process the request.
    Throttling,
}

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time every answer waits before it is sent.
    pub latency: Duration,
    /// Per-operation latencies (keys from [`op`]) replacing `latency`.
    pub latency_per_op: BTreeMap<&'static str, Duration>,
    /// `SubmitJob` calls accepted per second; `None` accepts all.
    pub submit_job_tps: Option<f64>,
    /// Calls the `SubmitJob` bucket holds when full (its burst).
    pub submit_job_burst: f64,
    /// `DetectLabels` calls accepted per second; `None` accepts all.
    pub detect_labels_tps: Option<f64>,
    /// Calls the `DetectLabels` bucket holds when full (its burst); `None`
    /// holds one second of calls.
    pub detect_labels_burst: Option<f64>,
    /// How a refused `DetectLabels` is answered.
    pub detect_labels_throttle: DetectThrottle,
    /// Labels in every `DetectLabels` answer (at most 100).
    pub labels_per_image: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_per_op: BTreeMap::new(),
            submit_job_tps: Some(SUBMIT_JOB_TPS),
            submit_job_burst: SUBMIT_JOB_TPS,
            detect_labels_tps: None,
            detect_labels_burst: None,
            detect_labels_throttle: DetectThrottle::ProvisionedThroughputExceeded,
            labels_per_image: 10,
        }
    }
}

/// AWS Batch's documented `SubmitJob` limit per account and Region.
pub const SUBMIT_JOB_TPS: f64 = 50.0;

impl Settings {
    fn latency_of(&self, operation: &str) -> Duration {
        self.latency_per_op
            .get(operation)
            .copied()
            .unwrap_or(self.latency)
    }
}

/// Calls seen for one operation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OpStats {
    /// Requests received (accepted and throttled).
    pub calls: u64,
    /// Requests answered with a throttling error.
    pub throttled: u64,
    /// DynamoDB read request units the accepted calls would consume.
    pub read_units: f64,
    /// DynamoDB write request units the accepted calls would consume.
    pub write_units: f64,
}

/// Width of one step of a [`RateSeries`].
pub const SERIES_STEP: Duration = Duration::from_millis(100);

/// Calls of one operation over time: accepted and throttled answers per
/// [`SERIES_STEP`] since the stand-in started, timed when the stand-in
/// decided (before its latency), which is when the cap counts them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateSeries {
    /// Accepted calls in step `i` (from `i × SERIES_STEP`).
    pub accepted: Vec<u32>,
    /// Throttled calls in step `i`.
    pub throttled: Vec<u32>,
    /// When the first call was accepted.
    pub first_accepted: Option<Duration>,
    /// When the last call was accepted.
    pub last_accepted: Option<Duration>,
}

impl RateSeries {
    /// Counts one call answered `at` (since the start).
    pub fn record(&mut self, at: Duration, throttled: bool) {
        let step = (at.as_nanos() / SERIES_STEP.as_nanos()) as usize;
        if self.accepted.len() <= step {
            self.accepted.resize(step + 1, 0);
            self.throttled.resize(step + 1, 0);
        }
        if throttled {
            self.throttled[step] += 1;
        } else {
            self.accepted[step] += 1;
            self.first_accepted.get_or_insert(at);
            self.last_accepted = Some(at);
        }
    }

    /// Accepted calls in all.
    pub fn total_accepted(&self) -> u64 {
        self.accepted.iter().map(|&n| u64::from(n)).sum()
    }

    /// Throttled calls in all.
    pub fn total_throttled(&self) -> u64 {
        self.throttled.iter().map(|&n| u64::from(n)).sum()
    }
}

/// A `SubmitJob` call that was accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedJob {
    /// Job id answered.
    pub job_id: String,
    /// `jobName`.
    pub name: String,
    /// `parameters.job`, the dispatcher's job spec.
    pub parameter: Option<String>,
    /// `arrayProperties.size`, for array jobs.
    pub array_size: Option<u64>,
    /// When it was accepted, from the stand-in's start.
    pub at: Duration,
}

type Item = Map<String, Value>;

#[derive(Default)]
struct Data {
    stats: BTreeMap<String, OpStats>,
    jobs: Vec<AcceptedJob>,
    objects: HashMap<(String, String), Vec<u8>>,
    /// (table, pk, sk) → item, in DynamoDB JSON.
    items: BTreeMap<(String, String, String), Item>,
    detect_series: RateSeries,
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, capacity: f64) -> Self {
        let capacity = capacity.max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct State {
    settings: Settings,
    started: Instant,
    data: Mutex<Data>,
    submit_bucket: Option<Mutex<Bucket>>,
    detect_bucket: Option<Mutex<Bucket>>,
}

impl State {
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data
            .lock()
            .expect("the stand-in's lock is never poisoned")
    }
}

/// A running stand-in; stops accepting connections when dropped.
pub struct StandIn {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl StandIn {
    /// Starts the server on `127.0.0.1` and a free port.
    pub async fn start(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let submit_bucket = settings
            .submit_job_tps
            .map(|tps| Mutex::new(Bucket::new(tps, settings.submit_job_burst)));
        let detect_bucket = settings.detect_labels_tps.map(|tps| {
            let burst = settings.detect_labels_burst.unwrap_or(tps);
            Mutex::new(Bucket::new(tps, burst))
        });
        let state = Arc::new(State {
            settings,
            started: Instant::now(),
            data: Mutex::new(Data::default()),
            submit_bucket,
            detect_bucket,
        });
        let accepting = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, Arc::clone(&accepting)));
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// The endpoint URL for `AWS_ENDPOINT_URL` or `endpoint_url(...)`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls per operation so far.
    pub fn stats(&self) -> BTreeMap<String, OpStats> {
        self.state.data().stats.clone()
    }

    /// Calls of one operation so far.
    pub fn op(&self, operation: &str) -> OpStats {
        self.state
            .data()
            .stats
            .get(operation)
            .cloned()
            .unwrap_or_default()
    }

    /// `DetectLabels` answers over time so far.
    pub fn detect_labels_series(&self) -> RateSeries {
        self.state.data().detect_series.clone()
    }

    /// Forgets the counts, the accepted jobs and the `DetectLabels` series
    /// (items and objects stay).
    pub fn reset_stats(&self) {
        let mut data = self.state.data();
        data.stats.clear();
        data.jobs.clear();
        data.detect_series = RateSeries::default();
    }

    /// The `SubmitJob` calls accepted so far.
    pub fn accepted_jobs(&self) -> Vec<AcceptedJob> {
        self.state.data().jobs.clone()
    }

    /// The body of an object, if it was put.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.state
            .data()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Stores an object directly, as if it had been put.
    pub fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.state
            .data()
            .objects
            .insert((bucket.to_owned(), key.to_owned()), body);
    }

    /// An item in DynamoDB JSON, if it exists.
    pub fn item(&self, table: &str, pk: &str, sk: &str) -> Option<Value> {
        self.state
            .data()
            .items
            .get(&(table.to_owned(), pk.to_owned(), sk.to_owned()))
            .map(|item| Value::Object(item.clone()))
    }

    /// Stores an item (DynamoDB JSON) directly, as if it had been put.
    pub fn put_item(&self, table: &str, item: Value) {
        let Value::Object(item) = item else {
            return;
        };
        if let Some(k) = key_of(table, &item) {
            self.state.data().items.insert(k, item);
        }
    }

    /// Number of items in `table`.
    pub fn item_count(&self, table: &str) -> usize {
        self.state
            .data()
            .items
            .keys()
            .filter(|(t, _, _)| t == table)
            .count()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One HTTP/1.1 request, as far as the stand-in needs it.
struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One answer.
struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, content_type: &'static str, body: &Value) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }
}

const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves requests on one connection until the client closes it.
async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut request_id: u64 = 0;
    loop {
        let request = match read_request(&mut reader, &mut write).await {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let (operation, response) = route(&request, &state);
        let latency = state.settings.latency_of(operation);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        request_id += 1;
        if write_response(&mut write, &response, request_id)
            .await
            .is_err()
            || close
        {
            return;
        }
    }
}

async fn read_request<R, W>(
    reader: &mut BufReader<R>,
    write: &mut W,
) -> std::io::Result<Option<Request>>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid("malformed request line"));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = HashMap::new();
    let mut header_bytes = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        header_bytes += n;
        if n == 0 || header_bytes > MAX_HEADER_BYTES {
            return Err(invalid("headers too long or cut short"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    if headers
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader, &mut body).await?;
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        body.resize(len, 0);
        reader.read_exact(&mut body).await?;
    }
    if headers
        .get("content-encoding")
        .is_some_and(|e| e.contains("aws-chunked"))
    {
        body = decode_aws_chunked(&body).ok_or_else(|| invalid("bad aws-chunked body"))?;
    }
    let path = target.split('?').next().unwrap_or("/").to_owned();
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

async fn read_chunked<R>(reader: &mut BufReader<R>, body: &mut Vec<u8>) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
    }
}

/// Decodes an `aws-chunked` body (S3 streaming uploads with a trailing
/// checksum): `<hex size>[;chunk-signature=…]\r\n<data>\r\n … 0\r\n<trailers>`.
fn decode_aws_chunked(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let header = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(header.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned())
}

async fn write_response<W>(
    write: &mut W,
    response: &Response,
    request_id: u64,
) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nx-amzn-requestid: standin-{request_id}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    write.write_all(head.as_bytes()).await?;
    write.write_all(&response.body).await?;
    write.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

const JSON_1_0: &str = "application/x-amz-json-1.0";
const JSON_1_1: &str = "application/x-amz-json-1.1";
const REST_JSON: &str = "application/json";

/// Picks the operation and answers it; returns the operation's name.
fn route(request: &Request, state: &State) -> (&'static str, Response) {
    if let Some(target) = request.header("x-amz-target") {
        if let Some(operation) = target.strip_prefix("DynamoDB_20120810.") {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            return dynamodb(operation, &body, state);
        }
        if target == "RekognitionService.DetectLabels" {
            return (op::DETECT_LABELS, detect_labels(state));
        }
        return ("Unknown", unknown_operation(JSON_1_1, target));
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/submitjob") => (op::SUBMIT_JOB, submit_job(&request.body, state)),
        ("PUT", path) => (op::PUT_OBJECT, put_object(path, &request.body, state)),
        ("GET", path) => (
            op::GET_OBJECT,
            get_object(path, request.header("range"), state),
        ),
        (method, path) => (
            "Unknown",
            unknown_operation(REST_JSON, &format!("{method} {path}")),
        ),
    }
}

fn unknown_operation(content_type: &'static str, what: &str) -> Response {
    Response::json(
        400,
        content_type,
        &json!({"__type": "UnknownOperationException", "message": format!("the stand-in does not serve {what}")}),
    )
}

fn count(state: &State, operation: &str, throttled: bool, read_units: f64, write_units: f64) {
    let mut data = state.data();
    let stats = data.stats.entry(operation.to_owned()).or_default();
    stats.calls += 1;
    if throttled {
        stats.throttled += 1;
    }
    stats.read_units += read_units;
    stats.write_units += write_units;
}

fn take(bucket: &Option<Mutex<Bucket>>) -> bool {
    bucket.as_ref().is_none_or(|b| {
        b.lock()
            .expect("the stand-in's lock is never poisoned")
            .try_take()
    })
}

fn submit_job(body: &[u8], state: &State) -> Response {
    if !take(&state.submit_bucket) {
        count(state, op::SUBMIT_JOB, true, 0.0, 0.0);
        return Response::json(
            429,
            REST_JSON,
            &json!({"__type": "TooManyRequestsException", "message": "Too Many Requests"}),
        );
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(name) = request["jobName"].as_str() else {
        count(state, op::SUBMIT_JOB, false, 0.0, 0.0);
        return Response::json(
            400,
            REST_JSON,
            &json!({"__type": "ClientException", "message": "jobName is required"}),
        );
    };
    let mut data = state.data();
    let n = data.jobs.len() as u64 + 1;
    let job_id = format!("{n:08x}-0000-4000-8000-{:012x}", n * 7919);
    data.jobs.push(AcceptedJob {
        job_id: job_id.clone(),
        name: name.to_owned(),
        parameter: request["parameters"]["job"].as_str().map(str::to_owned),
        array_size: request["arrayProperties"]["size"].as_u64(),
        at: state.started.elapsed(),
    });
    drop(data);
    count(state, op::SUBMIT_JOB, false, 0.0, 0.0);
    Response::json(
        200,
        REST_JSON,
        &json!({
            "jobArn": format!("arn:aws:batch:us-east-1:123456789012:job/{job_id}"),
            "jobName": name,
            "jobId": job_id,
        }),
    )
}

/// Label names the stand-in answers with, most confident first.
const LABELS: [(&str, &str, &str); 10] = [
    ("Cat", "Animal", "Animals and Pets"),
    ("Pet", "Animal", "Animals and Pets"),
    ("Mammal", "Animal", "Animals and Pets"),
    ("Kitten", "Cat", "Animals and Pets"),
    ("Furniture", "Home Decor", "Home and Indoors"),
    ("Couch", "Furniture", "Home and Indoors"),
    ("Indoors", "Room", "Home and Indoors"),
    ("Living Room", "Room", "Home and Indoors"),
    ("Plant", "Nature", "Plants and Flowers"),
    ("Window", "Architecture", "Buildings and Architecture"),
];

fn count_detect_labels(state: &State, throttled: bool) {
    count(state, op::DETECT_LABELS, throttled, 0.0, 0.0);
    let at = state.started.elapsed();
    state.data().detect_series.record(at, throttled);
}

fn detect_labels(state: &State) -> Response {
    if !take(&state.detect_bucket) {
        count_detect_labels(state, true);
        return match state.settings.detect_labels_throttle {
            DetectThrottle::ProvisionedThroughputExceeded => Response::json(
                400,
                JSON_1_1,
                &json!({"__type": "ProvisionedThroughputExceededException", "Message": "Provisioned rate exceeded"}),
            ),
            DetectThrottle::Throttling => Response::json(
                500,
                JSON_1_1,
                &json!({"__type": "ThrottlingException", "Message": "Rate exceeded"}),
            ),
        };
    }
    count_detect_labels(state, false);
    let labels: Vec<Value> = (0..state.settings.labels_per_image.min(100))
        .map(|i| {
            let (name, parent, category) = LABELS[i % LABELS.len()];
            let name = if i < LABELS.len() {
                name.to_owned()
            } else {
                format!("{name} {i}")
            };
            let instances = if i == 0 {
                json!([{"BoundingBox": {"Width": 0.5, "Height": 0.6, "Left": 0.2, "Top": 0.1}, "Confidence": 98.1, "DominantColors": []}])
            } else {
                json!([])
            };
            json!({
                "Name": name,
                "Confidence": 99.0 - i as f64 * 0.5,
                "Instances": instances,
                "Parents": [{"Name": parent}],
                "Aliases": [],
                "Categories": [{"Name": category}],
            })
        })
        .collect();
    Response::json(
        200,
        JSON_1_1,
        &json!({"Labels": labels, "LabelModelVersion": "3.0"}),
    )
}

fn object_path(path: &str) -> Option<(String, String)> {
    let trimmed = path.strip_prefix('/')?;
    let (bucket, key) = trimmed.split_once('/')?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((decode(bucket)?, decode(key)?)).filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

fn s3_error(status: u16, code: &str, message: &str) -> Response {
    Response {
        status,
        content_type: "application/xml",
        headers: Vec::new(),
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>standin</RequestId></Error>"
        )
        .into_bytes(),
    }
}

fn etag(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..32])
}

fn put_object(path: &str, body: &[u8], state: &State) -> Response {
    count(state, op::PUT_OBJECT, false, 0.0, 0.0);
    let Some(location) = object_path(path) else {
        return s3_error(400, "InvalidRequest", "path-style /bucket/key expected");
    };
    let tag = etag(body);
    state.data().objects.insert(location, body.to_vec());
    Response {
        status: 200,
        content_type: "application/xml",
        headers: vec![("etag", tag)],
        body: Vec::new(),
    }
}

/// `GetObject`, whole or of a `Range: bytes=A-B` (206 with `Content-Range`,
/// as the worker's read of an image's first bytes expects).
fn get_object(path: &str, range: Option<&str>, state: &State) -> Response {
    count(state, op::GET_OBJECT, false, 0.0, 0.0);
    let Some(location) = object_path(path) else {
        return s3_error(400, "InvalidRequest", "path-style /bucket/key expected");
    };
    let data = state.data();
    let Some(body) = data.objects.get(&location) else {
        return s3_error(404, "NoSuchKey", "The specified key does not exist.");
    };
    let total = body.len();
    let span = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match span {
        Some((start, _)) if start >= total => s3_error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable",
        ),
        Some((start, end)) => {
            let end = end.min(total - 1);
            Response {
                status: 206,
                content_type: "application/octet-stream",
                headers: vec![
                    ("etag", etag(body)),
                    ("content-range", format!("bytes {start}-{end}/{total}")),
                ],
                body: body[start..=end].to_vec(),
            }
        }
        None => Response {
            status: 200,
            content_type: "application/octet-stream",
            headers: vec![("etag", etag(body))],
            body: body.clone(),
        },
    }
}

// ---------------------------------------------------------------- DynamoDB

const PK: &str = labeler_core::schema::PK;
const SK: &str = labeler_core::schema::SK;

fn dynamodb(operation: &str, body: &Value, state: &State) -> (&'static str, Response) {
    let answer = |v: Value| Response::json(200, JSON_1_0, &v);
    let table = body["TableName"].as_str().unwrap_or_default();
    match operation {
        "PutItem" => {
            let item = body["Item"].as_object().cloned().unwrap_or_default();
            let mut data = state.data();
            let before = stored(&data, table, &item).map(item_size).unwrap_or(0);
            let units = write_units(before.max(item_size(&item)));
            if let Some(k) = key_of(table, &item) {
                data.items.insert(k, item);
            }
            drop(data);
            count(state, op::PUT_ITEM, false, 0.0, units);
            (op::PUT_ITEM, answer(json!({})))
        }
        "GetItem" => {
            let key = body["Key"].as_object().cloned().unwrap_or_default();
            let item = stored(&state.data(), table, &key).cloned();
            let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
            let units = read_units(item.as_ref().map(item_size).unwrap_or(0), consistent);
            count(state, op::GET_ITEM, false, units, 0.0);
            let out = match item {
                Some(item) => json!({"Item": item}),
                None => json!({}),
            };
            (op::GET_ITEM, answer(out))
        }
        "UpdateItem" => {
            let units = update_item(state, body, 1.0);
            count(state, op::UPDATE_ITEM, false, 0.0, units);
            (op::UPDATE_ITEM, answer(json!({})))
        }
        "DeleteItem" => {
            let key = body["Key"].as_object().cloned().unwrap_or_default();
            let mut data = state.data();
            let removed = key_of(table, &key).and_then(|k| data.items.remove(&k));
            drop(data);
            let units = write_units(removed.as_ref().map(item_size).unwrap_or(0));
            count(state, op::DELETE_ITEM, false, 0.0, units);
            (op::DELETE_ITEM, answer(json!({})))
        }
        "Query" => {
            let (items, units) = query(state, body);
            count(state, op::QUERY, false, units, 0.0);
            let n = items.len();
            (
                op::QUERY,
                answer(json!({"Items": items, "Count": n, "ScannedCount": n})),
            )
        }
        "TransactWriteItems" => {
            let mut units = 0.0;
            for action in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = action.get("Put") {
                    let table = put["TableName"].as_str().unwrap_or_default();
                    let item = put["Item"].as_object().cloned().unwrap_or_default();
                    let mut data = state.data();
                    let before = stored(&data, table, &item).map(item_size).unwrap_or(0);
                    units += 2.0 * write_units(before.max(item_size(&item)));
                    if let Some(k) = key_of(table, &item) {
                        data.items.insert(k, item);
                    }
                } else if let Some(update) = action.get("Update") {
                    units += update_item(state, update, 2.0);
                } else if let Some(delete) = action.get("Delete") {
                    let table = delete["TableName"].as_str().unwrap_or_default();
                    let key = delete["Key"].as_object().cloned().unwrap_or_default();
                    let removed = key_of(table, &key).and_then(|k| state.data().items.remove(&k));
                    units += 2.0 * write_units(removed.as_ref().map(item_size).unwrap_or(0));
                } else if action.get("ConditionCheck").is_some() {
                    units += 2.0;
                }
            }
            count(state, op::TRANSACT_WRITE_ITEMS, false, 0.0, units);
            (op::TRANSACT_WRITE_ITEMS, answer(json!({})))
        }
        "BatchWriteItem" => {
            let mut units = 0.0;
            for (table, requests) in body["RequestItems"].as_object().into_iter().flatten() {
                for request in requests.as_array().into_iter().flatten() {
                    let mut data = state.data();
                    if let Some(item) = request["PutRequest"]["Item"].as_object() {
                        units += write_units(item_size(item));
                        if let Some(k) = key_of(table, item) {
                            data.items.insert(k, item.clone());
                        }
                    } else if let Some(key) = request["DeleteRequest"]["Key"].as_object() {
                        let removed = key_of(table, key).and_then(|k| data.items.remove(&k));
                        units += write_units(removed.as_ref().map(item_size).unwrap_or(0));
                    }
                }
            }
            count(state, op::BATCH_WRITE_ITEM, false, 0.0, units);
            (
                op::BATCH_WRITE_ITEM,
                answer(json!({"UnprocessedItems": {}})),
            )
        }
        other => (
            "Unknown",
            Response::json(
                400,
                JSON_1_0,
                &json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#UnknownOperationException",
                    "message": format!("the stand-in does not serve DynamoDB {other}"),
                }),
            ),
        ),
    }
}

fn string_of(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.get("S")?.as_str().map(str::to_owned)
}

fn key_of(table: &str, item: &Item) -> Option<(String, String, String)> {
    Some((table.to_owned(), string_of(item, PK)?, string_of(item, SK)?))
}

fn stored<'a>(data: &'a Data, table: &str, key: &Item) -> Option<&'a Item> {
    data.items.get(&key_of(table, key)?)
}

/// Applies an `UpdateItem` (or a transaction's `Update`) to the store and
/// returns the write units it costs, times `factor` (2 in a transaction).
fn update_item(state: &State, update: &Value, factor: f64) -> f64 {
    let table = update["TableName"].as_str().unwrap_or_default();
    let key = update["Key"].as_object().cloned().unwrap_or_default();
    let Some(k) = key_of(table, &key) else {
        return factor;
    };
    let names = update["ExpressionAttributeNames"].as_object();
    let values = update["ExpressionAttributeValues"].as_object();
    let expression = update["UpdateExpression"].as_str().unwrap_or_default();
    let mut data = state.data();
    let item = data.items.entry(k).or_insert_with(|| key.clone());
    let before = item_size(item);
    apply_update(item, expression, names, values);
    factor * write_units(before.max(item_size(item)))
}

/// Applies the simple forms of an update expression: `SET a = :v, #b = :w`
/// and `REMOVE a, #b`. Other actions and functions are ignored.
fn apply_update(
    item: &mut Item,
    expression: &str,
    names: Option<&Map<String, Value>>,
    values: Option<&Map<String, Value>>,
) {
    let resolve = |name: &str| -> String {
        let name = name.trim();
        names
            .and_then(|n| n.get(name))
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned()
    };
    let mut clauses: Vec<(String, String)> = Vec::new();
    for word in expression.split_whitespace() {
        let upper = word.to_ascii_uppercase();
        if ["SET", "REMOVE", "ADD", "DELETE"].contains(&upper.as_str()) {
            clauses.push((upper, String::new()));
        } else if let Some((_, text)) = clauses.last_mut() {
            text.push(' ');
            text.push_str(word);
        }
    }
    for (action, text) in clauses {
        for part in text.split(',') {
            match action.as_str() {
                "SET" => {
                    let Some((name, value)) = part.split_once('=') else {
                        continue;
                    };
                    if let Some(v) = values.and_then(|v| v.get(value.trim())) {
                        item.insert(resolve(name), v.clone());
                    }
                }
                "REMOVE" => {
                    item.remove(&resolve(part));
                }
                _ => {}
            }
        }
    }
}

/// Answers `pk = :v [AND begins_with(sk, :w)]`; anything else finds nothing.
fn query(state: &State, body: &Value) -> (Vec<Value>, f64) {
    let table = body["TableName"].as_str().unwrap_or_default();
    let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
    let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
    let values = body["ExpressionAttributeValues"].as_object();
    let value = |placeholder: &str| -> Option<String> {
        values?
            .get(placeholder.trim().trim_end_matches(')'))?
            .get("S")?
            .as_str()
            .map(str::to_owned)
    };
    let mut pk = None;
    let mut prefix = None;
    for part in condition.split(" AND ") {
        let part = part.trim();
        if let Some(args) = part.strip_prefix("begins_with(") {
            prefix = args.split(',').nth(1).and_then(value);
        } else if let Some((name, placeholder)) = part.split_once('=') {
            if name.trim() == PK {
                pk = value(placeholder);
            }
        }
    }
    let Some(pk) = pk else {
        return (Vec::new(), read_units(0, consistent));
    };
    let data = state.data();
    let start = (table.to_owned(), pk.clone(), String::new());
    let items: Vec<&Item> = data
        .items
        .range(start..)
        .take_while(|((t, p, _), _)| t == table && *p == pk)
        .filter(|((_, _, sk), _)| prefix.as_deref().is_none_or(|pre| sk.starts_with(pre)))
        .map(|(_, item)| item)
        .collect();
    let size = items.iter().map(|i| item_size(i)).sum();
    let items = items
        .into_iter()
        .map(|i| Value::Object(i.clone()))
        .collect();
    (items, read_units(size, consistent))
}

/// Write request units of a write of an item of `size` bytes: one per KB,
/// at least one.
fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read request units of reading `size` bytes: one per 4 KB, at least one,
/// half for an eventually consistent read.
fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

/// An item's size by DynamoDB's rules: attribute names plus values (strings
/// and binaries by length, numbers by about one byte per two significant
/// digits plus one, lists and maps with 3 bytes plus 1 byte per element).
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, number_size),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(str::len).sum()
        }),
        "NS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(number_size).sum()
        }),
        "L" => inner.as_array().map_or(3, |a| {
            3 + a.iter().map(|e| 1 + value_size(e)).sum::<usize>()
        }),
        "M" => inner.as_object().map_or(3, |m| {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }),
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits = n.chars().filter(char::is_ascii_digit).collect::<String>();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_are_decoded() {
        let raw = b"5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(decode_aws_chunked(raw).unwrap(), b"hello world");
    }

    #[test]
    fn simple_update_expressions_are_applied() {
        let mut item: Item = serde_json::from_value(json!({
            "pk": {"S": "p"}, "sk": {"S": "s"}, "status": {"S": "QUEUED"}, "reason": {"S": "r"}
        }))
        .unwrap();
        let names = json!({"#status": "status"});
        let values = json!({":l": {"S": "LABELED"}, ":n": {"N": "2"}});
        apply_update(
            &mut item,
            "SET #status = :l, attempts = :n REMOVE reason",
            names.as_object(),
            values.as_object(),
        );
        assert_eq!(item["status"], json!({"S": "LABELED"}));
        assert_eq!(item["attempts"], json!({"N": "2"}));
        assert!(!item.contains_key("reason"));
    }

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let item: Item = serde_json::from_value(json!({
            "pk": {"S": "abcd"},
            "n": {"N": "12345"},
            "l": {"L": [{"S": "ab"}]},
        }))
        .unwrap();
        // pk: 2 + 4; n: 1 + (3 + 1); l: 1 + 3 + (1 + 2)
        assert_eq!(item_size(&item), 6 + 5 + 7);
        assert_eq!(write_units(1), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(10, false), 0.5);
    }

    #[test]
    fn the_bucket_lets_a_burst_through_and_then_refuses() {
        let mut bucket = Bucket::new(1.0, 3.0);
        let passed = (0..5).filter(|_| bucket.try_take()).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn the_series_counts_answers_per_step_and_keeps_the_first_and_last_accepted() {
        let mut series = RateSeries::default();
        let ms = Duration::from_millis;

        series.record(ms(30), true);
        series.record(ms(50), false);
        series.record(ms(99), false);
        series.record(ms(100), false);
        series.record(ms(420), true);

        assert_eq!(series.accepted, [2, 1, 0, 0, 0]);
        assert_eq!(series.throttled, [1, 0, 0, 0, 1]);
        assert_eq!(series.first_accepted, Some(ms(50)));
        assert_eq!(series.last_accepted, Some(ms(100)));
        assert_eq!((series.total_accepted(), series.total_throttled()), (3, 2));
    }

    #[tokio::test]
    async fn detect_labels_answers_are_recorded_in_the_series() {
        let standin = StandIn::start(Settings {
            detect_labels_tps: Some(1.0),
            detect_labels_burst: Some(2.0),
            ..Settings::default()
        })
        .await
        .unwrap();

        let answers: Vec<u16> = (0..3)
            .map(|_| detect_labels(&standin.state).status)
            .collect();

        assert_eq!(answers, [200, 200, 400]);
        let series = standin.detect_labels_series();
        assert_eq!((series.total_accepted(), series.total_throttled()), (2, 1));
        assert!(series.first_accepted <= series.last_accepted);
        standin.reset_stats();
        assert_eq!(standin.detect_labels_series(), RateSeries::default());
    }
}
