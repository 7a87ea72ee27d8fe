//! A fault-injecting gateway between the pipeline's AWS SDK clients and
//! moto, on loopback, for the chaos suite. **A test double**: it plays the
//! network and AWS Batch's job states, nothing else.
//!
//! * Every request is forwarded to moto except AWS Batch's `SubmitJob`,
//!   `DescribeJobs` and `ListJobs`, which an in-memory job table answers:
//!   moto's Batch (without Docker) reports every job SUCCEEDED the moment it
//!   is submitted, while the chaos suite runs the jobs itself and needs
//!   their real states.
//! * Faults are armed by the test ([`Gateway::arm`]): the next matching
//!   call can have its **response lost after the service acted** (forwarded,
//!   then answered 500), or the calling process **killed** at that call
//!   (before or after the service acted: the gateway never answers and
//!   signals [`Gateway::killed`], and the test drops the caller's future).
//! * It has **lanes** ([`Gateway::lane`]): each lane is an endpoint of its
//!   own, with its own armed fault, kill signal and DetectLabels counts, over
//!   the same Batch job table, outages and objects. Actors that run at once
//!   each talk through a lane, so a fault armed for one never hits another.
//! * Its Batch is **eventually consistent and forgetful**, as AWS Batch is:
//!   a new job stays out of `ListJobs` answers for a few calls
//!   ([`Gateway::list_lag`]), and finished jobs can be forgotten
//!   ([`Gateway::forget_finished`]), as Batch forgets them after days.
//! * It plays **outages** ([`Gateway::outage`]): while one is on, every
//!   call to that service is answered 503 without reaching it, as in a
//!   regional brownout, or throttled ([`Gateway::throttling`]), until the
//!   test ends it.
//! * It **holds** a call at a barrier ([`Gateway::hold`]) until the test
//!   releases it, so a test can run another actor in exactly that gap.
//! * It counts Rekognition `DetectLabels` calls per object key at the
//!   endpoint, and whether their answers reached the caller.
//! * By default it plays the images' first bytes: a ranged `GetObject`
//!   (the worker reading an image's first bytes to tell its format) is
//!   answered with a real 320×200 JPEG whatever the object holds. With
//!   [`Gateway::serve_real_objects`] every read goes to moto's objects, and
//!   the gateway **plays Rekognition**: `DetectLabels` reads the object
//!   (the version asked for) or the bytes sent and answers labels that
//!   depend on those bytes ([`labels_of`]), so a test can tell whose labels
//!   a record holds.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What happens to the next armed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded; the answer is replaced by HTTP 500.
    LoseResponse,
    /// The caller dies before the call reaches the service.
    KillBefore,
    /// The caller dies after the service acted, before it hears back.
    KillAfter,
}

/// A service the gateway can take down ([`Gateway::outage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon Rekognition.
    Rekognition,
    /// Amazon DynamoDB.
    DynamoDb,
    /// Amazon S3.
    S3,
    /// AWS Batch.
    Batch,
}

impl Service {
    /// Which service a request is for, from its JSON target or its path.
    fn of(target: &str, path: &str) -> Service {
        if target.starts_with("RekognitionService.") {
            Service::Rekognition
        } else if target.starts_with("DynamoDB_") {
            Service::DynamoDb
        } else if path.starts_with("/v1/") {
            Service::Batch
        } else {
            Service::S3
        }
    }
}

/// A fault waiting for the `nth` call (0 = the next one) of the armed run.
#[derive(Debug, Clone, Copy)]
struct Armed {
    countdown: usize,
    fault: Fault,
}

/// A job in the gateway's Batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Job id (children: `parent:index`).
    pub id: String,
    /// Job name.
    pub name: String,
    /// Queue as given.
    pub queue: String,
    /// Parameters (ours carry the job spec).
    pub parameters: HashMap<String, String>,
    /// Array size of a parent.
    pub array_size: Option<usize>,
    /// SUBMITTED, RUNNING, SUCCEEDED or FAILED.
    pub status: String,
    /// Why it failed.
    pub reason: String,
    /// The container's exit code, when it ran to an exit.
    pub exit_code: Option<i64>,
    /// Why the container did not run (`CannotPullContainerError: …`).
    pub container_reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// What every lane shares: Batch, outages, barriers, the fault log.
#[derive(Default)]
struct State {
    fault_log: Vec<(String, Fault)>,
    jobs: BTreeMap<String, Job>,
    next_job: u64,
    /// `ListJobs` calls each new job stays hidden for.
    list_lag: u32,
    /// Jobs hidden from `ListJobs`, and for how many more calls.
    hidden: BTreeMap<String, u32>,
    /// Jobs Batch no longer knows.
    forgotten: std::collections::BTreeSet<String>,
    detect_calls: BTreeMap<String, DetectCount>,
    outage: Option<Service>,
    /// The outage answers as throttling rather than 503.
    throttling: bool,
    outage_calls: usize,
    hold: Option<(String, Hold)>,
    /// Set by [`Gateway::serve_real_objects`]: the client DetectLabels reads with.
    real_objects: Option<aws_sdk_s3::Client>,
}

/// What one lane (one actor's endpoint) has of its own.
#[derive(Default)]
struct Lane {
    armed: Option<Armed>,
    killed: bool,
    detect_calls: BTreeMap<String, DetectCount>,
}

/// A barrier for one call ([`Gateway::hold`]).
#[derive(Clone, Default)]
pub struct Hold {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Hold {
    /// Resolves once the held call has arrived (and waits, unanswered).
    pub async fn reached(&self) {
        self.reached.notified().await
    }

    /// Lets the held call go on to the service.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// DetectLabels calls for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectCount {
    /// Calls that reached Rekognition (each is charged).
    pub charged: u32,
    /// Of those, answers that reached the caller.
    pub answered: u32,
    /// Of those, answers the gateway lost on purpose ([`Fault::LoseResponse`]):
    /// the caller's SDK retries, and the retry is charged again.
    pub lost: u32,
}

/// The running gateway.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<Mutex<State>>,
    /// DynamoDB applies one conditional write to an item atomically; moto's
    /// threaded server does not (two concurrent takes can both pass their
    /// condition), so the gateway forwards DynamoDB writes one at a time.
    db_writes: Arc<tokio::sync::Mutex<()>>,
    lane: Arc<Mutex<Lane>>,
    killed: Arc<tokio::sync::Notify>,
    upstream: Arc<str>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

type Body = Full<Bytes>;

impl Gateway {
    /// Starts the gateway in front of `upstream` (moto's endpoint).
    pub async fn start(upstream: &str) -> std::io::Result<Gateway> {
        let db_writes = Arc::default();
        Self::serve(
            Arc::default(),
            db_writes,
            upstream.trim_end_matches('/').into(),
        )
        .await
    }

    /// Another lane: an endpoint of its own, with its own armed fault, kill
    /// signal and DetectLabels counts, over this gateway's shared state.
    pub async fn lane(&self) -> std::io::Result<Gateway> {
        Self::serve(
            self.state.clone(),
            self.db_writes.clone(),
            self.upstream.clone(),
        )
        .await
    }

    async fn serve(
        state: Arc<Mutex<State>>,
        db_writes: Arc<tokio::sync::Mutex<()>>,
        upstream: Arc<str>,
    ) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let gateway = Gateway {
            state,
            db_writes,
            lane: Arc::default(),
            killed: Arc::new(tokio::sync::Notify::new()),
            upstream: upstream.clone(),
            endpoint,
        };
        let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
        let server = gateway.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (gw, upstream, client) = (server.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (gw, upstream, client) = (gw.clone(), upstream.clone(), client.clone());
                        async move { Ok::<_, Infallible>(gw.handle(req, &upstream, &client).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(gateway)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("gateway state")
    }

    fn lane_state(&self) -> std::sync::MutexGuard<'_, Lane> {
        self.lane.lock().expect("gateway lane")
    }

    /// Arms `fault` for this lane's call `countdown` calls from now (0: the
    /// next).
    pub fn arm(&self, countdown: usize, fault: Fault) {
        let mut st = self.lane_state();
        st.armed = Some(Armed { countdown, fault });
        st.killed = false;
    }

    /// Disarms any pending fault; returns whether a kill happened since the
    /// last [`Gateway::arm`].
    pub fn disarm(&self) -> bool {
        let mut st = self.lane_state();
        st.armed = None;
        std::mem::take(&mut st.killed)
    }

    /// Takes `service` down (every call answered 503 without reaching it)
    /// until the next call of this method; `None` ends the outage.
    pub fn outage(&self, service: Option<Service>) {
        self.state().outage = service;
    }

    /// Whether the outage answers as throttling (`ThrottlingException`,
    /// Batch's 429, S3's `SlowDown`) instead of 503.
    pub fn throttling(&self, throttling: bool) {
        self.state().throttling = throttling;
    }

    /// Holds the next call whose operation ends with `operation` (a JSON
    /// target such as `DynamoDB_20120810.PutItem`, or `METHOD /path`) at
    /// a barrier until [`Hold::release`].
    pub fn hold(&self, operation: &str) -> Hold {
        let hold = Hold::default();
        self.state().hold = Some((operation.to_owned(), hold.clone()));
        hold
    }

    /// Drops a hold no call has reached yet.
    pub fn unhold(&self) {
        self.state().hold = None;
    }

    /// Reads go to moto's objects and DetectLabels is answered from the
    /// bytes it reads ([`labels_of`]), instead of a fixed JPEG and moto's
    /// fixed labels.
    /// `s3` is a client of moto itself (not of the gateway), which the
    /// played Rekognition reads objects with, as Rekognition reads them with
    /// the caller's permissions.
    pub fn serve_real_objects(&self, s3: aws_sdk_s3::Client) {
        self.state().real_objects = Some(s3);
    }

    /// Calls answered 503 by outages so far.
    pub fn outage_calls(&self) -> usize {
        self.state().outage_calls
    }

    /// Resolves when a kill armed on this lane fires.
    pub async fn killed(&self) {
        self.killed.notified().await
    }

    /// Faults that fired, with the operation they hit.
    pub fn fault_log(&self) -> Vec<(String, Fault)> {
        self.state().fault_log.clone()
    }

    /// DetectLabels calls per key, through every lane.
    pub fn detect_calls(&self) -> BTreeMap<String, DetectCount> {
        self.state().detect_calls.clone()
    }

    /// DetectLabels calls per key through this lane.
    pub fn lane_detect_calls(&self) -> BTreeMap<String, DetectCount> {
        self.lane_state().detect_calls.clone()
    }

    /// Keeps each job submitted from now on out of the next `calls`
    /// `ListJobs` answers.
    pub fn list_lag(&self, calls: u32) {
        self.state().list_lag = calls;
    }

    /// Forgets every finished job: `DescribeJobs` and `ListJobs` no longer
    /// name it, as after Batch's retention of finished jobs has passed.
    pub fn forget_finished(&self) {
        let mut st = self.state();
        let done: Vec<String> = st
            .jobs
            .values()
            .filter(|j| j.status == "SUCCEEDED" || j.status == "FAILED")
            .map(|j| j.id.clone())
            .collect();
        st.forgotten.extend(done);
    }

    /// A job attempt that never ran its container (an image pull failed, a
    /// RUNNABLE job was cancelled): FAILED with Batch's `reason` and the
    /// container's `container_reason`, its attempt spent.
    pub fn never_ran(&self, id: &str, reason: &str, container_reason: &str) {
        self.set_status(id, "FAILED", reason, None);
        if let Some(job) = self.state().jobs.get_mut(id) {
            job.attempts += 1;
            job.container_reason = container_reason.to_owned();
        }
    }

    /// Every job, parents and children, forgotten ones too.
    pub fn jobs(&self) -> Vec<Job> {
        self.state().jobs.values().cloned().collect()
    }

    /// Sets a job's status, Batch's reason and the container's exit code
    /// (the test plays the compute environment); a job set RUNNING starts
    /// its next attempt.
    pub fn set_status(&self, id: &str, status: &str, reason: &str, exit_code: Option<i64>) {
        let mut st = self.state();
        if let Some(job) = st.jobs.get_mut(id) {
            job.status = status.to_owned();
            job.reason = reason.to_owned();
            job.exit_code = exit_code;
            if status == "RUNNING" {
                job.attempts += 1;
            }
        }
        if let Some((parent, _)) = id.split_once(':') {
            let children: Vec<&Job> = st
                .jobs
                .values()
                .filter(|j| j.id.starts_with(&format!("{parent}:")))
                .collect();
            let all_done = children
                .iter()
                .all(|c| c.status == "SUCCEEDED" || c.status == "FAILED");
            let any_failed = children.iter().any(|c| c.status == "FAILED");
            if all_done {
                let status = if any_failed { "FAILED" } else { "SUCCEEDED" };
                if let Some(p) = st.jobs.get_mut(parent) {
                    p.status = status.to_owned();
                }
            }
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        upstream: &str,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let path = parts.uri.path().to_owned();
        let operation = if target.is_empty() {
            format!("{} {path}", parts.method)
        } else {
            target.clone()
        };
        let held = {
            let mut st = self.state();
            match st.hold.take() {
                Some((op, hold)) if operation.ends_with(&op) => Some(hold),
                other => {
                    st.hold = other;
                    None
                }
            }
        };
        if let Some(hold) = held {
            hold.reached.notify_one();
            hold.release.notified().await;
        }
        let fault = {
            let mut st = self.state();
            let service = Service::of(&target, &path);
            if st.outage == Some(service) {
                st.outage_calls += 1;
                return refusal(service, st.throttling);
            }
            let mut lane = self.lane_state();
            match lane.armed.as_mut() {
                Some(a) if a.countdown == 0 => {
                    let fault = a.fault;
                    lane.armed = None;
                    st.fault_log.push((operation.clone(), fault));
                    Some(fault)
                }
                Some(a) => {
                    a.countdown -= 1;
                    None
                }
                None => None,
            }
        };
        if fault == Some(Fault::KillBefore) {
            return self.die().await;
        }
        let detect_key = (target == "RekognitionService.DetectLabels")
            .then(|| {
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    v.pointer("/Image/S3Object/Name")?
                        .as_str()
                        .map(str::to_owned)
                })
            })
            .flatten();
        let ranged_read = parts.method == hyper::Method::GET && parts.headers.contains_key("range");
        let real = self.state().real_objects.clone();
        let response = match path.as_str() {
            "/v1/submitjob" => self.submit_job(&body),
            "/v1/describejobs" => self.describe_jobs(&body),
            "/v1/listjobs" => self.list_jobs(&body),
            _ if ranged_read && real.is_none() => image_head(),
            _ if target == "RekognitionService.DetectLabels" && real.is_some() => {
                detect_labels(real.as_ref(), &body).await
            }
            _ if is_dynamodb_write(&target) => {
                let _one_at_a_time = self.db_writes.lock().await;
                forward(client, upstream, parts, body).await
            }
            _ => forward(client, upstream, parts, body).await,
        };
        if let Some(key) = &detect_key {
            let answered = fault.is_none() && response.status().is_success();
            let lost = fault == Some(Fault::LoseResponse);
            let mut st = self.state();
            let mut lane = self.lane_state();
            for counts in [&mut st.detect_calls, &mut lane.detect_calls] {
                let count = counts.entry(key.clone()).or_default();
                count.charged += 1;
                count.answered += u32::from(answered);
                count.lost += u32::from(lost);
            }
        }
        match fault {
            Some(Fault::KillAfter) => self.die().await,
            Some(Fault::LoseResponse) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"__type": "InternalServerError", "message": "response lost"}),
            ),
            _ => response,
        }
    }

    /// The caller is dead: tell the test, and never answer.
    async fn die(&self) -> Response<Body> {
        self.lane_state().killed = true;
        self.killed.notify_waiters();
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"message": "dead"}))
    }

    fn submit_job(&self, body: &[u8]) -> Response<Body> {
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            return client_error("request is not JSON");
        };
        let mut st = self.state();
        st.next_job += 1;
        let id = format!("job-{:04}", st.next_job);
        let name = req["jobName"].as_str().unwrap_or_default().to_owned();
        let queue = req["jobQueue"].as_str().unwrap_or_default().to_owned();
        let parameters: HashMap<String, String> =
            serde_json::from_value(req["parameters"].clone()).unwrap_or_default();
        let array_size = req["arrayProperties"]["size"].as_u64().map(|n| n as usize);
        let job = |id: String| Job {
            id,
            name: name.clone(),
            queue: queue.clone(),
            parameters: parameters.clone(),
            array_size: None,
            status: "SUBMITTED".into(),
            reason: String::new(),
            exit_code: None,
            container_reason: String::new(),
            attempts: 0,
        };
        if let Some(n) = array_size {
            for i in 0..n {
                let child = job(format!("{id}:{i}"));
                st.jobs.insert(child.id.clone(), child);
            }
        }
        let mut parent = job(id.clone());
        parent.array_size = array_size;
        st.jobs.insert(id.clone(), parent);
        let lag = st.list_lag;
        st.hidden.insert(id.clone(), lag);
        json_response(
            StatusCode::OK,
            &json!({"jobArn": format!("arn:aws:batch:us-east-1:123456789012:job/{id}"), "jobName": name, "jobId": id}),
        )
    }

    fn describe_jobs(&self, body: &[u8]) -> Response<Body> {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        let st = self.state();
        let jobs: Vec<Value> = req["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| st.jobs.get(id.as_str()?))
            .filter(|j| !st.forgotten.contains(&j.id))
            .map(|j| {
                json!({
                    "jobArn": format!("arn:aws:batch:us-east-1:123456789012:job/{}", j.id),
                    "jobName": j.name, "jobId": j.id, "jobQueue": j.queue,
                    "status": j.status, "statusReason": j.reason,
                    "container": {"exitCode": j.exit_code, "reason": j.container_reason},
                    "createdAt": 1, "startedAt": 1,
                    "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/worker:1",
                    "parameters": j.parameters
                })
            })
            .collect();
        json_response(StatusCode::OK, &json!({ "jobs": jobs }))
    }

    fn list_jobs(&self, body: &[u8]) -> Response<Body> {
        let req: Value = serde_json::from_slice(body).unwrap_or_default();
        let name = req
            .pointer("/filters/0/values/0")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut st = self.state();
        let st = &mut *st;
        let hidden: std::collections::BTreeSet<String> = st
            .hidden
            .iter()
            .filter(|(_, calls)| **calls > 0)
            .map(|(id, _)| id.clone())
            .collect();
        for calls in st.hidden.values_mut() {
            *calls = calls.saturating_sub(1);
        }
        let jobs: Vec<Value> = st
            .jobs
            .values()
            .filter(|j| !j.id.contains(':'))
            .filter(|j| !hidden.contains(&j.id) && !st.forgotten.contains(&j.id))
            .filter(|j| name.as_deref().is_none_or(|n| n == j.name))
            .map(|j| json!({"jobId": j.id, "jobName": j.name, "status": j.status, "createdAt": 1}))
            .collect();
        json_response(StatusCode::OK, &json!({ "jobSummaryList": jobs }))
    }
}

async fn forward(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    upstream: &str,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut builder = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        if name != "host" {
            builder = builder.header(name, value);
        }
    }
    let request = builder.body(Full::new(body)).expect("a forwarded request");
    match client.request(request).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(e) => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"message": format!("gateway could not reach moto: {e}")}),
        ),
    }
}

/// The labels the gateway's Rekognition gives `bytes`: one naming the
/// bytes' SHA-256 prefix, so different pictures get different labels and
/// the same picture the same ones, and one every picture has.
pub fn labels_of(bytes: &[u8]) -> Vec<String> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    vec![format!("Picture {hex}"), "Photograph".to_owned()]
}

/// DetectLabels played from the bytes it reads: the `Bytes` sent, or the
/// `S3Object` (and version) read from moto with `s3`; an object that cannot
/// be read is Rekognition's `InvalidS3ObjectException`.
async fn detect_labels(s3: Option<&aws_sdk_s3::Client>, body: &[u8]) -> Response<Body> {
    use base64::Engine;
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return client_error("request is not JSON");
    };
    let bytes = match (
        request.pointer("/Image/Bytes").and_then(Value::as_str),
        request.pointer("/Image/S3Object"),
        s3,
    ) {
        (Some(b64), _, _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .ok(),
        (None, Some(object), Some(s3)) => read_object(s3, object).await,
        _ => None,
    };
    let Some(bytes) = bytes else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"__type": "InvalidS3ObjectException", "message": "Unable to get object metadata from S3. Check object key, region and/or access permissions."}),
        );
    };
    let labels: Vec<Value> = labels_of(&bytes)
        .into_iter()
        .map(|name| json!({"Name": name, "Confidence": 97.5, "Instances": [], "Parents": [], "Aliases": [], "Categories": []}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"Labels": labels, "LabelModelVersion": "3.0"}),
    )
}

/// An object's bytes (the version named, else the current one), or `None`
/// if it cannot be read.
async fn read_object(s3: &aws_sdk_s3::Client, object: &Value) -> Option<Bytes> {
    let got = s3
        .get_object()
        .bucket(object.get("Bucket")?.as_str()?)
        .key(object.get("Name")?.as_str()?)
        .set_version_id(
            object
                .get("Version")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
        .send()
        .await
        .ok()?;
    Some(got.body.collect().await.ok()?.into_bytes())
}
/// The first bytes of every image: the whole sample JPEG, as a 206.
fn image_head() -> Response<Body> {
    const JPEG: &[u8] = include_bytes!("../../samples/sunset.jpg");
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header("content-type", "image/jpeg")
        .header(
            "content-range",
            format!("bytes 0-{}/{}", JPEG.len() - 1, JPEG.len()),
        )
        .body(Full::new(Bytes::from_static(JPEG)))
        .expect("a static response")
}

/// A DynamoDB call that writes.
fn is_dynamodb_write(target: &str) -> bool {
    target.strip_prefix("DynamoDB_20120810.").is_some_and(|op| {
        matches!(
            op,
            "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem"
        )
    })
}

/// How a service down answers: 503, or throttling as each service says it.
fn refusal(service: Service, throttling: bool) -> Response<Body> {
    match (service, throttling) {
        (Service::S3, true) => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            )))
            .expect("a SlowDown answer"),
        (Service::Batch, true) => json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"__type": "TooManyRequestsException", "message": "Too Many Requests"}),
        ),
        (_, true) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
        ),
        (_, false) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"__type": "ServiceUnavailableException", "message": "brownout"}),
        ),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

fn client_error(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"__type": "ClientException", "message": message}),
    )
}
