//! The chaos suite: seeded, reproducible runs of the whole pipeline's code
//! on moto that duplicate, drop and reorder deliveries, lose responses after
//! the service acted, kill the dispatcher and the worker between any two AWS
//! calls and drop Batch state events — then let the reconciler reach
//! quiescence and check every key against invariants 1–3.
//!
//! What runs is the real code through the real AWS SDK: the dispatcher's
//! `handle` (as Lambda would call it), the worker's run (as a Batch
//! container would), the reconciler's pass (as its schedule would). Between
//! them and moto sits the fault-injecting [`Gateway`] (a test double that
//! also plays Batch's job table). A process killed at a call is a future
//! dropped at that call: it makes no further call, exactly like a process
//! that died there. Time is virtual where the code takes it as a parameter
//! (claims, leases, the reconciler's thresholds), so leases expire at once.
//!
//! `CHAOS_SEED=N` replays one run; `CHAOS_RUNS=K` runs seeds N..N+K (default
//! 1..=4 as part of `make test`; `make chaos` runs more). A failure prints the
//! seed, the first violated invariant and the history of the key.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use dispatcher::config::Config;
use dispatcher::dispatch::{handle, Clients as DispatchClients};
use integration_tests::gateway::{DetectCount, Fault, Gateway, Service};
use integration_tests::{provision, Moto, Stack};
use labeler_core::labeling::Attempt;
use labeler_core::store::Clock;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use worker::{JobRequest, Settings, Shutdown};

#[derive(Debug, Clone, PartialEq)]
enum OpKind {
    PutImage,
    PutEmpty,
    PutText,
    Delete,
    DeleteMarker,
    /// Permanent delete of a noncurrent version.
    DeleteOldVersion(String),
}

#[derive(Debug, Clone)]
struct Op {
    key: String,
    kind: OpKind,
    seq: String,
    version: Option<String>,
}

impl Op {
    fn record(&self, bucket: &str) -> Value {
        let name = match self.kind {
            OpKind::PutImage | OpKind::PutEmpty | OpKind::PutText => "ObjectCreated:Put",
            OpKind::Delete | OpKind::DeleteOldVersion(_) => "ObjectRemoved:Delete",
            OpKind::DeleteMarker => "ObjectRemoved:DeleteMarkerCreated",
        };
        let mut object = json!({
            "key": labeler_core::key::encode_event_key(&self.key, false),
            "sequencer": self.seq,
        });
        match &self.kind {
            OpKind::PutImage | OpKind::PutText => object["size"] = json!(4321),
            OpKind::PutEmpty => object["size"] = json!(0),
            _ => {}
        }
        let version = match &self.kind {
            OpKind::DeleteOldVersion(v) => Some(v.clone()),
            _ => self.version.clone(),
        };
        if let Some(v) = version {
            object["versionId"] = json!(v);
        }
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-29T12:00:00.000Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": object}
        })
    }

    /// What the key's record must say if this is its newest delivered change.
    fn expected(&self) -> Option<&'static str> {
        match self.kind {
            OpKind::PutImage => Some("LABELED"),
            OpKind::PutEmpty | OpKind::PutText => Some("SKIPPED"),
            OpKind::Delete | OpKind::DeleteMarker => Some("DELETED"),
            OpKind::DeleteOldVersion(_) => None,
        }
    }
}

/// A seeded scenario: the uploads, overwrites, copies and deletes of a few
/// awkward keys, in a plain or a versioned bucket.
fn scenario(rng: &mut fastrand::Rng, versioned: bool) -> Vec<Op> {
    let names = [
        "chaos/beach day.jpg",
        "chaos/café+λ.jpg",
        "chaos/100% sure.png",
        "chaos/a=b&c.jpeg",
        "chaos/plain.jpg",
        "chaos/copy of plain.jpg",
        "chaos/notes.txt",
        "chaos/empty.jpg",
    ];
    let mut seq = 0x0062E99A88DC4000u64;
    let mut ops = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut versions: Vec<String> = Vec::new();
        let steps = 1 + rng.usize(0..3);
        for step in 0..steps {
            seq += 1 + rng.u64(0..16);
            let put = |kind| {
                let version = versioned.then(|| format!("v{i}-{step}"));
                (kind, version)
            };
            let (kind, version) = match (step, name.ends_with(".txt"), name.contains("empty")) {
                (_, true, _) => put(OpKind::PutText),
                (0, _, true) => put(OpKind::PutEmpty),
                (0, _, _) => put(OpKind::PutImage),
                _ => match (rng.u8(0..4), versioned) {
                    (0 | 1, _) => put(OpKind::PutImage),
                    (2, false) => (OpKind::Delete, None),
                    (2, true) => (OpKind::DeleteMarker, Some(format!("m{i}-{step}"))),
                    (_, true) if versions.len() > 1 => {
                        (OpKind::DeleteOldVersion(versions[0].clone()), None)
                    }
                    _ => put(OpKind::PutImage),
                },
            };
            if let Some(v) = &version {
                if kind != OpKind::DeleteMarker {
                    versions.push(v.clone());
                }
            }
            ops.push(Op {
                key: (*name).to_owned(),
                kind,
                seq: format!("{seq:018X}"),
                version,
            });
        }
    }
    ops
}

struct Run {
    seed: u64,
    rng: fastrand::Rng,
    _moto: Moto,
    direct: SdkConfig,
    gateway: Gateway,
    stack: Stack,
    dispatch: DispatchClients,
    worker: worker::Clients,
    cfg: Config,
    now: Clock,
    history: BTreeMap<String, Vec<String>>,
    /// Extra DetectLabels answers a key may have: calls answered to a worker
    /// that was killed before it could store the result.
    allowance: BTreeMap<String, u32>,
    /// The service down now, and for how many more steps of the storm.
    outage: Option<(Service, u32)>,
    /// Storm steps during which some service was down.
    outage_steps: u32,
}

const KILL_OR_LOSE: [Fault; 3] = [Fault::LoseResponse, Fault::KillBefore, Fault::KillAfter];

impl Run {
    async fn start(seed: u64) -> Run {
        let moto = Moto::start_for_tests();
        let direct = moto.sdk_config().await;
        let stack = provision(&direct).await;
        let gateway = Gateway::start(&moto.endpoint)
            .await
            .expect("gateway starts");
        let through = direct
            .to_builder()
            .endpoint_url(&gateway.endpoint)
            .retry_config(dispatcher::retry_policy(3))
            .build();
        let s3 = integration_tests::s3_client(&through);
        let cfg = Config::from_lookup(|k| {
            Some(match k {
                "JOB_QUEUE" => stack.job_queue.clone(),
                "JOB_DEFINITION" => stack.job_definition.clone(),
                "TABLE_NAME" => stack.table.clone(),
                "IMAGES_PER_JOB" => "2".into(),
                "WRITE_CONCURRENCY" | "SUBMIT_CONCURRENCY" => "1".into(),
                "MAX_ATTEMPTS" => "3".into(),

                _ => return None,
            })
        })
        .expect("chaos config");
        Run {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            _moto: moto,
            dispatch: DispatchClients {
                batch: aws_sdk_batch::Client::new(&through),
                dynamodb: aws_sdk_dynamodb::Client::new(&through),
                s3: s3.clone(),
            },
            worker: worker::Clients {
                rekognition: aws_sdk_rekognition::Client::new(&through),
                dynamodb: aws_sdk_dynamodb::Client::new(&through),
                s3,
            },
            direct,
            gateway,
            stack,
            cfg,
            now: Clock::now(),
            history: BTreeMap::new(),
            allowance: BTreeMap::new(),
            outage: None,
            outage_steps: 0,
        }
    }

    /// One step of weather: a running outage goes on or ends; a new one
    /// (of Rekognition, DynamoDB, S3 or Batch, for 2–6 steps) starts with
    /// probability `p`. Every call to the service down is answered 503.
    fn weather(&mut self, p: f64) {
        const SERVICES: [Service; 4] = [
            Service::Rekognition,
            Service::DynamoDb,
            Service::S3,
            Service::Batch,
        ];
        self.outage = match self.outage.take() {
            Some((service, left)) if left > 1 => Some((service, left - 1)),
            Some(_) => None,
            None if self.rng.f64() < p => {
                let service = SERVICES[self.rng.usize(0..SERVICES.len())];
                Some((service, self.rng.u32(2..=6)))
            }
            None => None,
        };
        self.outage_steps += u32::from(self.outage.is_some());
        self.gateway.outage(self.outage.map(|(service, _)| service));
    }

    fn note(&mut self, key: &str, what: String) {
        self.history.entry(key.to_owned()).or_default().push(what);
    }

    /// Arms a fault for the next action with probability `p`.
    fn maybe_arm(&mut self, p: f64) -> Option<(usize, Fault)> {
        if self.rng.f64() >= p {
            self.gateway.disarm();
            return None;
        }
        let fault = KILL_OR_LOSE[self.rng.usize(0..KILL_OR_LOSE.len())];
        let countdown = self.rng.usize(0..5);
        self.gateway.arm(countdown, fault);
        Some((countdown, fault))
    }

    /// One dispatcher invocation; `false` if it failed or died (the
    /// platform delivers it again).
    async fn invoke(&mut self, payload: &Value, faults: f64) -> bool {
        let armed = self.maybe_arm(faults);
        let request_id = format!("req-{}", self.rng.u64(..));
        let gateway = self.gateway.clone();
        let result = tokio::select! {
            r = handle(payload, &request_id, &self.dispatch, &self.cfg, self.now) => Some(r),
            () = gateway.killed() => None,
        };
        let killed = self.gateway.disarm();
        let outcome = match (&result, killed) {
            (None, _) => "killed".to_owned(),
            (Some(Ok(v)), _) => format!("ok {v}"),
            (Some(Err(e)), _) => format!("failed: {e}"),
        };
        for key in keys_of(payload) {
            self.note(
                &key,
                format!("dispatcher invocation, fault {armed:?}: {outcome}"),
            );
        }
        matches!(result, Some(Ok(_)))
    }

    /// Plays Batch's compute environment once over every runnable job.
    async fn compute(&mut self, faults: f64, drop_events: f64) {
        let runnable: Vec<_> = self
            .gateway
            .jobs()
            .into_iter()
            .filter(|j| j.status == "SUBMITTED" && j.array_size.is_none())
            .collect();
        for job in runnable {
            let (parent, index) = match job.id.split_once(':') {
                Some((p, i)) => (p.to_owned(), Some(i.parse::<usize>().unwrap())),
                None => (job.id.clone(), None),
            };
            let attempt = job.attempts + 1;
            self.gateway.set_status(&job.id, "RUNNING", "", None);
            let request = JobRequest {
                job: job.parameters.get("job").cloned().unwrap_or_default(),
                array_index: index,
                expect_table: None,
            };
            let settings = Settings {
                concurrency: 1,
                // Outages here last whole steps of the storm, and the storm
                // waits for this run: a paid answer is kept through a
                // DynamoDB outage for a few seconds, then left QUEUED.
                time_budget: std::time::Duration::from_secs(4),
                attempt: Attempt {
                    job_id: Some(parent.clone()),
                    owner: job.id.clone(),
                    attempt,
                },
                ..Settings::default()
            };
            let armed = self.maybe_arm(faults);
            let before = self.gateway.detect_calls();
            let gateway = self.gateway.clone();
            let worker = self.worker.clone();
            let ran = tokio::select! {
                r = async {
                    let (spec, chunk) = worker::load_job(&request, &worker.s3).await.ok()?;
                    let outcome = worker::run(&spec, &chunk, &worker, &settings, Shutdown::never()).await;
                    Some((chunk, outcome))
                } => Some(r),
                () = gateway.killed() => None,
            };
            self.gateway.disarm();
            let after = self.gateway.detect_calls();
            // The documented ways to pay twice: a worker killed after
            // Rekognition answered, and one whose DynamoDB stayed down for
            // the rest of its time budget while it kept the answer (the
            // record is still QUEUED after the run). Each is counted.
            let charged: Vec<(&String, u32)> = after
                .iter()
                .map(|(key, count)| {
                    let was = before.get(key).copied().unwrap_or_default();
                    (key, (count.charged - count.lost) - (was.charged - was.lost))
                })
                .filter(|(_, extra)| *extra > 0)
                .collect();
            if !charged.is_empty() {
                let (images, _) = self.records().await;
                for (key, extra) in charged {
                    let unwritten = ran.is_none()
                        || images
                            .get(key)
                            .is_some_and(|r| text(r, "status") == "QUEUED");
                    if unwritten {
                        *self.allowance.entry(key.clone()).or_default() += extra;
                    }
                }
            }
            let (status, reason, exit_code) = match &ran {
                None => {
                    // A process killed mid-call is a host taken away
                    // (Spot, a scale-in): an outage, not the images.
                    ("FAILED", "Host EC2 (instance i-0c4a05) terminated.", None)
                }
                Some(None) => ("FAILED", "Essential container in task exited", Some(4)),
                Some(Some((_, outcome))) if outcome.exit_code() == worker::ExitCode::Success => {
                    ("SUCCEEDED", "", None)
                }
                Some(Some(_)) if attempt < 2 => ("SUBMITTED", "", None),
                Some(Some((_, outcome))) => (
                    "FAILED",
                    "Essential container in task exited",
                    Some(i64::from(outcome.exit_code().code())),
                ),
            };
            if let Some(Some((chunk, _))) = &ran {
                for image in chunk {
                    let (key, id) = (image.key.clone(), job.id.clone());
                    self.note(
                        &key,
                        format!("worker {id} attempt {attempt}, fault {armed:?}: {status}"),
                    );
                }
            }
            self.gateway.set_status(&job.id, status, reason, exit_code);
            if status == "FAILED" {
                if self.rng.f64() < drop_events {
                    continue;
                }
                let event = json!({
                    "version": "0", "source": "aws.batch", "detail-type": "Batch Job State Change",
                    "detail": {
                        "jobId": job.id, "jobName": job.name, "jobQueue": job.queue,
                        "status": "FAILED", "statusReason": reason,
                        "parameters": job.parameters,
                        "arrayProperties": index.map(|i| json!({"index": i})),
                        "container": {"exitCode": exit_code}
                    }
                });
                self.invoke(&event, faults).await;
            }
        }
    }

    async fn records(
        &self,
    ) -> (
        BTreeMap<String, HashMap<String, AttributeValue>>,
        BTreeMap<String, Vec<HashMap<String, AttributeValue>>>,
    ) {
        let db = aws_sdk_dynamodb::Client::new(&self.direct);
        let mut images = BTreeMap::new();
        let mut entries: BTreeMap<String, Vec<_>> = BTreeMap::new();
        let mut start = None;
        loop {
            let page = db
                .scan()
                .table_name(&self.stack.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan the results table");
            for item in page.items() {
                let key = text(item, "key");
                if text(item, "sk") == "IMAGE" {
                    images.insert(key, item.clone());
                } else {
                    entries.entry(key).or_default().push(item.clone());
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        (images, entries)
    }

    fn fail(&self, key: &str, what: String) -> ! {
        let history = self.history.get(key).cloned().unwrap_or_default();
        panic!(
            "chaos seed {}: invariant violated for {key:?}: {what}\nhistory of the key:\n  {}\nfaults fired: {:?}",
            self.seed,
            history.join("\n  "),
            self.gateway.fault_log()
        );
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn keys_of(payload: &Value) -> Vec<String> {
    payload["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.pointer("/s3/object/key")?.as_str())
        .filter_map(|k| labeler_core::key::decode_event_key(k).ok())
        .collect()
}

async fn chaos_run(seed: u64) {
    let mut run = Run::start(seed).await;
    let versioned = seed % 2 == 0;
    let ops = scenario(&mut run.rng, versioned);
    let bucket = run.stack.bucket.clone();

    // Deliveries: every event at least once, some twice, some dropped for
    // good (plain buckets only: see the README on versioned buckets), in a
    // shuffled order, in small batches.
    let mut events: Vec<(Op, Value)> = Vec::new();
    for op in &ops {
        let record = op.record(&bucket);
        if !versioned && run.rng.f64() < 0.1 {
            run.note(
                &op.key,
                format!("{:?} seq {} dropped for good", op.kind, op.seq),
            );
            continue;
        }
        let copies = if run.rng.f64() < 0.3 { 2 } else { 1 };
        for _ in 0..copies {
            events.push((op.clone(), record.clone()));
        }
    }
    let delivered: Vec<Op> = events.iter().map(|(op, _)| op.clone()).collect();
    run.rng.shuffle(&mut events);
    let mut queue: VecDeque<(Vec<Value>, u32)> = VecDeque::new();
    while !events.is_empty() {
        let n = run.rng.usize(1..=3).min(events.len());
        let batch: Vec<(Op, Value)> = events.drain(..n).collect();
        for (op, _) in &batch {
            let what = format!(
                "{:?} seq {} version {:?} delivered",
                op.kind, op.seq, op.version
            );
            run.note(&op.key, what);
        }
        queue.push_back((batch.into_iter().map(|(_, r)| r).collect(), 0));
    }

    // The storm: deliveries with faults, Batch running jobs with faults,
    // state events dropped. A failed or killed invocation is delivered again
    // (Lambda's retries, SQS's visibility timeout) up to three times.
    // Regional outages come and go meanwhile. A delivery that fails four
    // times goes to the dead-letter queue, which the operator redrives
    // once the storm is over (the README's remedy).
    let mut dead_letters = Vec::new();
    while let Some((records, tries)) = queue.pop_front() {
        run.weather(0.15);
        let payload = json!({ "Records": records });
        if !run.invoke(&payload, 0.6).await {
            if tries < 3 {
                queue.push_back((records, tries + 1));
            } else {
                dead_letters.push(payload);
            }
        }
        if run.rng.f64() < 0.5 {
            run.compute(0.5, 0.4).await;
        }
    }
    run.weather(0.0);
    run.compute(0.5, 0.4).await;
    run.outage = None;
    run.gateway.outage(None);
    for payload in &dead_letters {
        for key in keys_of(payload) {
            run.note(&key, "redriven from the dead-letter queue".into());
        }
        assert!(
            run.invoke(payload, 0.0).await,
            "a redriven delivery is handled"
        );
    }

    // Calm: time passes, jobs run, the reconciler runs to quiescence.
    let mut quiet = false;
    for _ in 0..12 {
        run.now = run
            .now
            .plus_secs(run.cfg.reconcile.after_secs + run.cfg.claim_lease_secs + 1);
        let report = dispatcher::dispatch::reconcile_now(&run.dispatch, &run.cfg, run.now)
            .await
            .expect("reconciler pass");
        run.compute(0.0, 0.0).await;
        let (images, _) = run.records().await;
        let queued = images
            .values()
            .filter(|r| text(r, "status") == "QUEUED")
            .count();
        if report.examined == 0 && queued == 0 {
            quiet = true;
            break;
        }
    }

    // The checker.
    let (images, entries) = run.records().await;
    let mut newest: BTreeMap<String, Op> = BTreeMap::new();
    let mut creates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for op in &delivered {
        if op.expected().is_none() {
            continue;
        }
        if op.kind == OpKind::PutImage {
            creates
                .entry(op.key.clone())
                .or_default()
                .insert(op.seq.clone());
        }
        match newest.get(&op.key) {
            Some(n) if n.seq >= op.seq => {}
            _ => {
                newest.insert(op.key.clone(), op.clone());
            }
        }
    }
    if !quiet {
        let stuck = images.iter().find(|(_, r)| text(r, "status") == "QUEUED");
        let key = stuck.map(|(k, _)| k.clone()).unwrap_or_default();
        run.fail(
            &key,
            "the reconciler did not reach quiescence: a record is still QUEUED".into(),
        );
    }
    for (key, op) in &newest {
        let record = images.get(key);
        let status = record.map(|r| text(r, "status")).unwrap_or_default();
        let expected = op.expected().expect("newest ops have an outcome");
        let revision = labeler_core::Revision::from_sequencer(&op.seq).unwrap();
        match (expected, record) {
            ("DELETED", None) => {}
            ("DELETED", Some(r)) if status == "DELETED" && text(r, "revision") == revision.as_str() => {}
            (want, Some(r)) if status == want && text(r, "revision") == revision.as_str() => {
                if want == "SKIPPED" && text(r, "reason").is_empty() {
                    run.fail(key, "SKIPPED without a reason".into());
                }
            }
            (want, r) => run.fail(
                key,
                format!(
                    "expected {want} for the newest change {:?} (seq {}), found {status:?} for revision {:?}",
                    op.kind,
                    op.seq,
                    r.map(|r| text(r, "revision"))
                ),
            ),
        }
        let labels: BTreeSet<String> = record
            .and_then(|r| r.get("labels")?.as_l().ok())
            .into_iter()
            .flatten()
            .filter_map(|l| {
                l.as_m()
                    .ok()?
                    .get("name")?
                    .as_s()
                    .ok()
                    .map(|n| format!("LABEL#{n}"))
            })
            .collect();
        let indexed: BTreeSet<String> = entries
            .get(key)
            .into_iter()
            .flatten()
            .map(|e| text(e, "sk"))
            .collect();
        if labels != indexed {
            run.fail(
                key,
                format!(
                    "label-index entries {indexed:?} differ from the record's labels {labels:?}"
                ),
            );
        }
        if let Some(stale) = entries
            .get(key)
            .into_iter()
            .flatten()
            .find(|e| record.is_none_or(|r| text(e, "revision") != text(r, "revision")))
        {
            run.fail(
                key,
                format!(
                    "label entry {} belongs to another upload",
                    text(stale, "sk")
                ),
            );
        }
    }
    let calls = run.gateway.detect_calls();
    for (key, DetectCount { charged, lost, .. }) in &calls {
        let uploads = creates.get(key).map_or(0, |c| c.len() as u32);
        let allowance = run.allowance.get(key).copied().unwrap_or(0);
        if *charged > uploads + allowance + lost {
            run.fail(key, format!("DetectLabels charged {charged} times for {uploads} uploads (allowed: {allowance} for workers killed or out of time after an answer, {lost} for answers lost in transit)"));
        }
    }
    let charged: u32 = calls.values().map(|c| c.charged).sum();
    let faults = run.gateway.fault_log().len();
    eprintln!(
        "chaos seed {seed}: {} changes of {} keys ({}), {faults} faults fired, {} storm steps in an outage ({} calls refused), {} deliveries redriven, {charged} DetectLabels calls; every key converged",
        ops.len(),
        newest.len(),
        if versioned { "versioned bucket" } else { "plain bucket" },
        run.outage_steps,
        run.gateway.outage_calls(),
        dead_letters.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_converges_under_seeded_chaos() {
    let first: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runs: u64 = std::env::var("CHAOS_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for seed in first..first + runs {
        chaos_run(seed).await;
    }
}
