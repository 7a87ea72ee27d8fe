//! The chaos suite: seeded, reproducible runs of the whole pipeline's code
//! on moto, as hard as production is, then a judge of what every key ends as.
//!
//! **The bucket is real.** Uploads, overwrites, deletes, delete markers,
//! permanent deletes of a version and console undeletes are made on moto's
//! S3 while the pipeline runs, with real bytes (each upload a different
//! picture, some a copy of another key's), in a plain bucket (odd seeds) or
//! a versioned one (even seeds). Each change's event carries what S3 said:
//! its ETag, size and version id. Overwrites land while jobs for the older
//! upload run.
//!
//! **Actors run at once.** Each step of the storm runs, concurrently, up to
//! two dispatcher deliveries, up to two Batch jobs (chunks of the worker)
//! and sometimes a reconciler pass, each through its own lane of the
//! fault-injecting [`Gateway`] (a test double: it plays the network, Batch's
//! job table and Rekognition): a fault armed for one actor — its response
//! lost after the service acted, the process killed before or after a call
//! — hits that actor only. Regional outages of one service come and go.
//! Deliveries are duplicated, reordered, batched, dropped for good (plain
//! buckets), wrapped in SQS envelopes answered with `batchItemFailures`
//! (only the failed messages come back) or delivered straight (a failed
//! invocation comes back whole); after three failures one goes to the
//! dead-letter queue and is redriven. Batch retries failed attempts, drops
//! state events, lists new jobs late and, after the storm, forgets finished
//! ones.
//!
//! **Rekognition reads the picture.** The gateway answers DetectLabels from
//! the bytes it reads (the version asked for), so the judge can tell whose
//! labels a record holds: in a versioned bucket a key's record must be
//! LABELED with exactly the labels of S3's current version (by id), SKIPPED
//! with a reason, or DELETED when a marker or nothing is current; in a plain
//! bucket its record must name the newest delivered change, and its labels
//! must be those of a picture the key held at or after that change. FAILED
//! is accepted only for an object that is gone, with "cannot be read".
//! Label-index entries must match the record, and DetectLabels must be
//! charged no more than once per upload (the key and revision the worker
//! held) and, per key, once per image made current, plus the documented
//! allowances (answers lost in transit, workers killed after an answer).
//!
//! `CHAOS_SEED=N` replays one run; `CHAOS_RUNS=K` runs seeds N..N+K (default
//! 1..=4 as part of `make test`; `make chaos` runs more). A failure prints the
//! seed, the first violated rule and the history of the key.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use dispatcher::config::Config;
use dispatcher::dispatch::{handle, Clients as DispatchClients};
use futures::future::join_all;
use integration_tests::gateway::{labels_of, DetectCount, Fault, Gateway, Job, Service};
use integration_tests::{provision, Moto, Stack};
use labeler_core::labeling::Attempt;
use labeler_core::store::Clock;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use worker::{JobRequest, Settings, Shutdown};

type Item = HashMap<String, AttributeValue>;
/// An upload (or a version made current again): its key and revision.
type Upload = (String, String);

const PICTURE: &[u8] = include_bytes!("../../samples/sunset.jpg");
const KILL_OR_LOSE: [Fault; 3] = [Fault::LoseResponse, Fault::KillBefore, Fault::KillAfter];

/// What an uploader or an operator does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A new picture (or a copy of another key's).
    PutImage,
    /// An empty object.
    PutEmpty,
    /// A text file.
    PutText,
    /// A plain delete: the object goes (plain bucket) or a delete marker
    /// hides it (versioned bucket).
    Delete,
    /// The permanent delete of one version (perhaps the current one).
    DeleteVersion,
    /// The console's undelete: the permanent delete of the current marker.
    Undelete,
}

/// A change as S3 made it, and the event S3 sends for it.
#[derive(Debug, Clone)]
struct Applied {
    key: String,
    change: Change,
    seq: String,
    /// The version the change made or removed.
    version: Option<String>,
    /// The bytes a put wrote.
    bytes: Option<Vec<u8>>,
    record: Value,
}

impl Applied {
    /// Makes an image version current (a labeling is owed for it).
    fn owes_labels(&self) -> bool {
        matches!(
            self.change,
            Change::PutImage | Change::Undelete | Change::DeleteVersion
        )
    }
}

/// One key's versions in the bucket, oldest first: `(id, delete marker)`.
#[derive(Debug, Default, Clone)]
struct Versions(Vec<(String, bool)>);

/// The bucket the storm changes, through moto's S3 directly (uploaders and
/// operators do not go through the pipeline's gateway).
struct Bucket {
    s3: aws_sdk_s3::Client,
    name: String,
    versioned: bool,
    versions: BTreeMap<String, Versions>,
    seq: u64,
    pictures: u32,
    last_picture: Option<Vec<u8>>,
}

impl Bucket {
    /// Makes `change` to `key` (a change whose precondition does not hold
    /// becomes an upload) and returns what S3 did.
    async fn apply(&mut self, rng: &mut fastrand::Rng, key: &str, change: Change) -> Applied {
        self.seq += 1 + rng.u64(0..16);
        let seq = format!("{:018X}", 0x0062E99A88DC4000u64 + self.seq);
        let versions = self.versions.entry(key.to_owned()).or_default().clone();
        let current_marker = versions.0.last().is_some_and(|(_, m)| *m);
        let objects: Vec<&String> = versions
            .0
            .iter()
            .filter(|(_, m)| !m)
            .map(|(v, _)| v)
            .collect();
        let change = match change {
            Change::DeleteVersion if !self.versioned || objects.is_empty() => upload(key),
            Change::Undelete if !current_marker => Change::Delete,
            other => other,
        };
        let mut etags = None;
        let (version, bytes) = match change {
            Change::PutImage | Change::PutEmpty | Change::PutText => {
                let bytes = self.bytes_for(rng, key, change);
                let (version, etag) = self.put(key, &bytes, rng.bool()).await;
                etags = Some(etag);
                (version, Some(bytes))
            }
            Change::Delete => (self.delete(key, None).await, None),
            Change::DeleteVersion => {
                let victim = objects[rng.usize(0..objects.len())].clone();
                self.delete(key, Some(&victim)).await;
                (Some(victim), None)
            }
            Change::Undelete => {
                let marker = versions.0.last().map(|(v, _)| v.clone());
                self.delete(key, marker.as_deref()).await;
                (marker, None)
            }
        };
        self.remember(key, change, version.as_deref());
        let upload = bytes
            .as_ref()
            .zip(etags.as_deref())
            .map(|(b, e)| (b.len(), e));
        let record = self.record(key, change, &seq, version.as_deref(), upload);
        Applied {
            key: key.to_owned(),
            change,
            seq,
            version,
            bytes,
            record,
        }
    }

    /// A new picture (a valid JPEG whose bytes no other upload has), or
    /// sometimes a copy of the last one, an empty object or some text.
    fn bytes_for(&mut self, rng: &mut fastrand::Rng, key: &str, change: Change) -> Vec<u8> {
        match change {
            Change::PutEmpty => Vec::new(),
            Change::PutText => format!("notes about {key}").into_bytes(),
            _ => match &self.last_picture {
                Some(copy) if rng.f64() < 0.25 => copy.clone(),
                _ => {
                    self.pictures += 1;
                    let mut bytes = PICTURE.to_vec();
                    bytes.extend_from_slice(format!("picture {}", self.pictures).as_bytes());
                    self.last_picture = Some(bytes.clone());
                    bytes
                }
            },
        }
    }

    /// Uploads `bytes` (with a SHA-256 checksum S3 keeps, if `checksum`);
    /// returns the version id and the ETag S3 answered.
    async fn put(&self, key: &str, bytes: &[u8], checksum: bool) -> (Option<String>, String) {
        let out = self
            .s3
            .put_object()
            .bucket(&self.name)
            .key(key)
            .set_checksum_algorithm(checksum.then_some(ChecksumAlgorithm::Sha256))
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .expect("an upload to moto");
        let etag = out.e_tag().expect("an ETag").trim_matches('"').to_owned();
        (out.version_id().map(str::to_owned), etag)
    }

    async fn delete(&self, key: &str, version: Option<&str>) -> Option<String> {
        let out = self
            .s3
            .delete_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .expect("a delete on moto");
        out.version_id().map(str::to_owned)
    }

    fn remember(&mut self, key: &str, change: Change, version: Option<&str>) {
        let versions = &mut self.versions.entry(key.to_owned()).or_default().0;
        match (change, version) {
            (Change::DeleteVersion | Change::Undelete, Some(v)) => {
                versions.retain(|(id, _)| id != v)
            }
            (Change::Delete, Some(marker)) => versions.push((marker.to_owned(), true)),
            (Change::Delete, None) => versions.clear(),
            (_, Some(v)) => versions.push((v.to_owned(), false)),
            (_, None) => *versions = Versions(vec![("null".into(), false)]).0,
        }
    }

    /// The S3 event record of a change: its name, key, sequencer and what
    /// S3 answered (version id, ETag and size of an upload).
    fn record(
        &self,
        key: &str,
        change: Change,
        seq: &str,
        version: Option<&str>,
        upload: Option<(usize, &str)>,
    ) -> Value {
        let name = match change {
            Change::PutImage | Change::PutEmpty | Change::PutText => "ObjectCreated:Put",
            Change::Delete if self.versioned => "ObjectRemoved:DeleteMarkerCreated",
            _ => "ObjectRemoved:Delete",
        };
        let mut object = json!({
            "key": labeler_core::key::encode_event_key(key, false),
            "sequencer": seq,
        });
        if let Some((size, etag)) = upload {
            object["size"] = json!(size);
            object["eTag"] = json!(etag);
        }
        if let Some(v) = version.filter(|_| self.versioned) {
            object["versionId"] = json!(v);
        }
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-29T12:00:00.000Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": self.name}, "object": object}
        })
    }
}

/// What uploads to `key` hold: text, nothing, or pictures.
fn upload(key: &str) -> Change {
    match (key.ends_with(".txt"), key.contains("empty")) {
        (true, _) => Change::PutText,
        (_, true) => Change::PutEmpty,
        _ => Change::PutImage,
    }
}

/// A seeded plan: the changes of a few awkward keys, interleaved.
fn plan(rng: &mut fastrand::Rng, versioned: bool) -> Vec<(String, Change)> {
    let names = [
        "chaos/beach day.jpg",
        "chaos/café+λ.jpg",
        "chaos/100% sure.png",
        "chaos/a=b&c.jpeg",
        "chaos/IMG_0001.Jpg",
        "chaos/copy of plain.jpg",
        "chaos/notes.txt",
        "chaos/empty.jpg",
    ];
    let mut per_key: Vec<VecDeque<Change>> = names
        .iter()
        .map(|name| {
            let first = upload(name);
            let mut changes = VecDeque::from([first]);
            for _ in 0..rng.usize(0..4) {
                changes.push_back(match (rng.u8(0..6), versioned) {
                    (0 | 1, _) => first,
                    (2, _) => Change::Delete,
                    (3, true) => Change::DeleteVersion,
                    (4, true) => Change::Undelete,
                    _ => first,
                });
                // An operator restores from the console what was just deleted.
                if versioned && changes.back() == Some(&Change::Delete) && rng.bool() {
                    changes.push_back(Change::Undelete);
                }
            }
            changes
        })
        .collect();
    let mut plan = Vec::new();
    while per_key.iter().any(|c| !c.is_empty()) {
        let i = rng.usize(0..names.len());
        if let Some(change) = per_key[i].pop_front() {
            plan.push((names[i].to_owned(), change));
        }
    }
    plan
}

/// A delivery of S3 events or a Batch state event, as the platform retries it.
#[derive(Debug, Clone)]
struct Delivery {
    payload: Value,
    tries: u32,
}

/// One actor's end of the gateway, and the clients that talk through it.
#[derive(Clone)]
struct Lane {
    gateway: Gateway,
    dispatch: DispatchClients,
    worker: worker::Clients,
}

impl Lane {
    async fn open(gateway: Gateway, direct: &SdkConfig) -> Lane {
        let through = direct
            .to_builder()
            .endpoint_url(&gateway.endpoint)
            .retry_config(dispatcher::retry_policy(3))
            .build();
        let s3 = integration_tests::s3_client(&through);
        Lane {
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
            gateway,
        }
    }

    /// Runs `work` as a process that dies if a kill armed on this lane fires.
    async fn run<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let gateway = self.gateway.clone();
        let out = tokio::select! {
            r = work => Some(r),
            () = gateway.killed() => None,
        };
        self.gateway.disarm();
        out
    }
}

/// What one actor of a step does.
enum Act {
    Deliver(Delivery),
    Work(Job),
    Reconcile,
}

/// How an actor's step ended.
enum Done {
    /// `None`: killed; `Some(Err)`: the invocation failed.
    Delivered(Delivery, Option<Result<Value, String>>),
    /// The job, its attempt, how the worker ended (`None`: killed; `Some(None)`:
    /// its job could not be loaded; else its exit code) and the DetectLabels
    /// calls it made.
    Worked(Job, u32, Option<Option<i32>>, BTreeMap<String, DetectCount>),
    Reconciled(Option<Result<u64, String>>),
    /// A job attempt that never ran, and its state event.
    NeverRan(Value),
}

struct Run {
    seed: u64,
    rng: fastrand::Rng,
    _moto: Moto,
    direct: SdkConfig,
    gateway: Gateway,
    lanes: Vec<Lane>,
    stack: Stack,
    cfg: Config,
    now: Clock,
    bucket: Bucket,
    sqs: bool,
    history: BTreeMap<String, Vec<String>>,
    /// Extra DetectLabels answers a key may have: calls answered to a worker
    /// that was killed, or ran out of time, before it could store the result.
    allowance: BTreeMap<Upload, u32>,
    /// DetectLabels calls charged for each upload (key and revision of the
    /// image the worker held), net of answers the gateway lost in transit.
    charged: BTreeMap<Upload, u32>,
    /// The service down now, and for how many more steps of the storm.
    outage: Option<(Service, u32)>,
    outage_steps: u32,
    steps_at_once: usize,
    /// Steps in which one call was held until the other actors finished.
    barriers: usize,
    /// Batch attempts spent without running.
    never_ran_count: usize,
}

impl Run {
    async fn start(seed: u64) -> Run {
        let moto = Moto::start_for_tests();
        let direct = moto.sdk_config().await;
        let stack = provision(&direct).await;
        let gateway = Gateway::start(&moto.endpoint)
            .await
            .expect("gateway starts");
        let s3 = integration_tests::s3_client(&direct);
        gateway.serve_real_objects(s3.clone());
        let mut lanes = Vec::new();
        for _ in 0..5 {
            let lane = gateway.lane().await.expect("a gateway lane");
            lanes.push(Lane::open(lane, &direct).await);
        }
        let versioned = seed.is_multiple_of(2);
        if versioned {
            enable_versioning(&s3, &stack.bucket).await;
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        gateway.list_lag(rng.u32(0..3));
        Run {
            seed,
            sqs: rng.bool(),
            rng,
            _moto: moto,
            bucket: Bucket {
                s3,
                name: stack.bucket.clone(),
                versioned,
                versions: BTreeMap::new(),
                seq: 0,
                pictures: 0,
                last_picture: None,
            },
            cfg: chaos_config(&stack),
            direct,
            gateway,
            lanes,
            stack,
            now: Clock::now(),
            history: BTreeMap::new(),
            allowance: BTreeMap::new(),
            charged: BTreeMap::new(),
            outage: None,
            outage_steps: 0,
            steps_at_once: 0,
            barriers: 0,
            never_ran_count: 0,
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
                self.gateway.throttling(self.rng.bool());
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

    /// Arms a fault on `lane` with probability `p`.
    fn maybe_arm(&mut self, lane: usize, p: f64) -> Option<(usize, Fault)> {
        let gateway = &self.lanes[lane].gateway;
        if self.rng.f64() >= p {
            gateway.disarm();
            return None;
        }
        let fault = KILL_OR_LOSE[self.rng.usize(0..KILL_OR_LOSE.len())];
        let countdown = self.rng.usize(0..5);
        gateway.arm(countdown, fault);
        Some((countdown, fault))
    }

    /// Makes the next planned change to the bucket and queues its event:
    /// once, twice, or (plain buckets only: see the README on versioned
    /// buckets) never.
    async fn change(
        &mut self,
        key: &str,
        change: Change,
        queue: &mut VecDeque<Delivery>,
    ) -> Applied {
        let applied = self.bucket.apply(&mut self.rng, key, change).await;
        let what = format!(
            "{:?} seq {} version {:?} made",
            applied.change, applied.seq, applied.version
        );
        self.note(key, what);
        if !self.bucket.versioned && self.rng.f64() < 0.1 {
            self.note(
                key,
                format!("event of seq {} dropped for good", applied.seq),
            );
            return Applied {
                record: Value::Null,
                ..applied
            };
        }
        let copies = if self.rng.f64() < 0.3 { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.rng.usize(0..=queue.len().min(3));
            let payload = self.envelope(vec![applied.record.clone()]);
            queue.insert(queue.len() - at, Delivery { payload, tries: 0 });
        }
        applied
    }

    /// S3 events as Lambda receives them: straight, or in an SQS batch of
    /// one message per event.
    fn envelope(&mut self, records: Vec<Value>) -> Value {
        if !self.sqs {
            return json!({ "Records": records });
        }
        let messages: Vec<Value> = records
            .into_iter()
            .map(|r| {
                json!({
                    "messageId": format!("m-{}", self.rng.u64(..)),
                    "eventSource": "aws:sqs",
                    "body": json!({ "Records": [r] }).to_string(),
                })
            })
            .collect();
        json!({ "Records": messages })
    }

    /// Takes up to `n` deliveries from the front of the queue, merging SQS
    /// messages (or direct records) into one batch as the platform does.
    fn next_batch(&mut self, queue: &mut VecDeque<Delivery>) -> Option<Delivery> {
        let first = queue.pop_front()?;
        if first.payload.get("source").is_some() {
            return Some(first);
        }
        let mut batch = first;
        for _ in 0..self.rng.usize(0..3) {
            match queue.front() {
                Some(d) if d.payload.get("source").is_none() && d.tries == batch.tries => {
                    let more = queue.pop_front().expect("a front");
                    let records = batch.payload["Records"].as_array_mut().expect("records");
                    records.extend(
                        more.payload["Records"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
                _ => break,
            }
        }
        Some(batch)
    }

    /// Jobs Batch would start now: submitted, not an array parent.
    fn runnable(&self) -> Vec<Job> {
        self.gateway
            .jobs()
            .into_iter()
            .filter(|j| j.status == "SUBMITTED" && j.array_size.is_none())
            .collect()
    }

    /// One step of the storm: the actors chosen run at once, each on its lane.
    async fn step(&mut self, queue: &mut VecDeque<Delivery>, faults: f64) -> Vec<Done> {
        let mut acts = Vec::new();
        for _ in 0..self.rng.usize(1..=2) {
            if let Some(d) = self.next_batch(queue) {
                acts.push(Act::Deliver(d));
            }
        }
        let mut jobs = self.runnable();
        self.rng.shuffle(&mut jobs);
        let mut never_ran = Vec::new();
        for job in jobs.into_iter().take(self.rng.usize(0..=2)) {
            if self.rng.f64() < 0.1 {
                never_ran.push(self.never_ran(job));
                continue;
            }
            self.gateway.set_status(&job.id, "RUNNING", "", None);
            acts.push(Act::Work(job));
        }
        if self.rng.f64() < 0.15 {
            acts.push(Act::Reconcile);
        }
        let mut done = self.act_all(acts, faults).await;
        done.extend(never_ran);
        done
    }

    /// An attempt Batch spends without running the container: a Spot
    /// reclaim before start, an image that cannot be pulled, a RUNNABLE job
    /// cancelled for capacity.
    fn never_ran(&mut self, job: Job) -> Done {
        const WAYS: [(&str, &str); 3] = [
            ("Your Spot Task was interrupted.", ""),
            (
                "Task failed to start",
                "CannotPullContainerError: ref pull has been retried 5 time(s)",
            ),
            ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", ""),
        ];
        let (reason, container) = WAYS[self.rng.usize(0..WAYS.len())];
        self.gateway.never_ran(&job.id, reason, container);
        self.never_ran_count += 1;
        for key in job_keys(&job) {
            self.note(
                &key,
                format!("job {} never ran: {reason} {container}", job.id),
            );
        }
        Done::NeverRan(state_event(&job, reason, container, None))
    }

    /// Runs `acts` at once, actor `i` on lane `i`, each with a fault armed
    /// with probability `faults`.
    async fn act_all(&mut self, acts: Vec<Act>, faults: f64) -> Vec<Done> {
        let n = acts.len();
        let armed: Vec<Option<(usize, Fault)>> =
            (0..n).map(|lane| self.maybe_arm(lane, faults)).collect();
        self.steps_at_once += usize::from(n > 1);
        let reconcile_at = self
            .now
            .plus_secs(self.cfg.reconcile.after_secs + self.cfg.claim_lease_secs + 1);
        let ids: Vec<String> = (0..n)
            .map(|_| format!("req-{:016x}", self.rng.u64(..)))
            .collect();
        let barrier = self.barrier(n);
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let this = &*self;
        let futures = acts.into_iter().zip(ids).enumerate().map(|(i, (act, id))| {
            let finished = &finished;
            async move {
                let done = this.act(&this.lanes[i], act, &id, reconcile_at).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                done
            }
        });
        let release = async {
            let Some(hold) = &barrier else { return };
            // The held call's actor cannot finish before its release: once
            // every other actor has, let it go on.
            while finished.load(std::sync::atomic::Ordering::SeqCst) + 1 < n {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            hold.release();
        };
        let (done, ()) = futures::join!(join_all(futures), release);
        self.gateway.unhold();
        for (d, fault) in done.iter().zip(armed) {
            self.note_done(d, fault);
        }
        if done.iter().any(|d| matches!(d, Done::Reconciled(_))) {
            self.now = reconcile_at;
        }
        done
    }

    /// One actor's turn on `lane`: a delivery as Lambda invokes the handler
    /// (`id` its request id), a Batch job's attempt, or a reconciler pass at
    /// `reconcile_at`.
    async fn act(&self, lane: &Lane, act: Act, id: &str, reconcile_at: Clock) -> Done {
        match act {
            Act::Deliver(d) => {
                let handled = handle(&d.payload, id, &lane.dispatch, &self.cfg, self.now);
                let r = lane.run(handled).await;
                Done::Delivered(d, r.map(|r| r.map_err(|e| e.to_string())))
            }
            Act::Work(job) => self.work(lane, job).await,
            Act::Reconcile => {
                let pass =
                    dispatcher::dispatch::reconcile_now(&lane.dispatch, &self.cfg, reconcile_at);
                let r = lane.run(pass).await;
                Done::Reconciled(
                    r.map(|r| r.map(|rep| rep.examined as u64).map_err(|e| e.to_string())),
                )
            }
        }
    }

    /// Sometimes, when actors run at once, holds the next call of one kind
    /// of write (whichever actor makes it) until every other actor of the
    /// step has finished: the seeded interleaving the slowest call makes.
    fn barrier(&mut self, actors: usize) -> Option<integration_tests::gateway::Hold> {
        const HELD: [&str; 5] = [
            "DynamoDB_20120810.PutItem",
            "DynamoDB_20120810.UpdateItem",
            "DynamoDB_20120810.TransactWriteItems",
            "POST /v1/submitjob",
            "RekognitionService.DetectLabels",
        ];
        if actors < 2 || self.rng.f64() >= 0.3 {
            return None;
        }
        self.barriers += 1;
        Some(self.gateway.hold(HELD[self.rng.usize(0..HELD.len())]))
    }

    /// A Batch job's attempt: the worker's chunk run as a container would.
    async fn work(&self, lane: &Lane, job: Job) -> Done {
        let (parent, index) = match job.id.split_once(':') {
            Some((p, i)) => (
                p.to_owned(),
                Some(i.parse::<usize>().expect("a child index")),
            ),
            None => (job.id.clone(), None),
        };
        let attempt = job.attempts + 1;
        let request = JobRequest {
            job: job.parameters.get("job").cloned().unwrap_or_default(),
            array_index: index,
            expect_table: None,
        };
        let settings = Settings {
            concurrency: 1,
            // Outages last whole steps of the storm, and the storm waits for
            // this run: a paid answer is kept through a DynamoDB outage for a
            // few seconds, then left QUEUED.
            time_budget: std::time::Duration::from_secs(4),
            attempt: Attempt {
                job_id: Some(parent),
                owner: job.id.clone(),
                attempt,
            },
            ..Settings::default()
        };
        let before = lane.gateway.lane_detect_calls();
        let ran = lane
            .run(async {
                let Ok((spec, chunk)) = worker::load_job(&request, &lane.worker.s3).await else {
                    return None;
                };
                let outcome =
                    worker::run(&spec, &chunk, &lane.worker, &settings, Shutdown::never()).await;
                Some(i32::from(outcome.exit_code().code()))
            })
            .await;
        let calls = delta(&before, &lane.gateway.lane_detect_calls());
        Done::Worked(job, attempt, ran, calls)
    }

    fn note_done(&mut self, done: &Done, fault: Option<(usize, Fault)>) {
        let (keys, what) = match done {
            Done::Delivered(d, r) => (
                keys_of(&d.payload),
                format!(
                    "dispatcher invocation (try {}), fault {fault:?}: {}",
                    d.tries,
                    outcome(r)
                ),
            ),
            Done::Worked(job, attempt, ran, _) => (
                job_keys(job),
                format!(
                    "worker {} attempt {attempt}, fault {fault:?}: exit {ran:?}",
                    job.id
                ),
            ),
            Done::NeverRan(_) => return,
            Done::Reconciled(r) => (
                Vec::new(),
                format!("reconciler, fault {fault:?}: {}", outcome(r)),
            ),
        };
        for key in keys {
            self.note(&key, what.clone());
        }
    }

    /// What the platform does after a step: failed deliveries come back
    /// (SQS: only the failed messages), Batch retries or fails jobs and
    /// sends (or drops) their state events.
    async fn settle(
        &mut self,
        done: Vec<Done>,
        queue: &mut VecDeque<Delivery>,
        dead: &mut Vec<Delivery>,
        drop_events: f64,
    ) {
        for d in done {
            match d {
                Done::Delivered(delivery, result) => {
                    if let Some(again) = redelivery(delivery, result) {
                        if again.tries > 3 {
                            dead.push(again);
                        } else {
                            queue.push_back(again);
                        }
                    }
                }
                Done::Worked(job, attempt, ran, calls) => {
                    self.allow(&job, &calls, ran.is_none()).await;
                    if let Some(event) = self.batch_result(&job, attempt, ran) {
                        if self.rng.f64() >= drop_events {
                            queue.push_back(Delivery {
                                payload: event,
                                tries: 0,
                            });
                        }
                    }
                }
                Done::NeverRan(event) => {
                    if self.rng.f64() >= drop_events {
                        queue.push_back(Delivery {
                            payload: event,
                            tries: 0,
                        });
                    }
                }
                Done::Reconciled(_) => {}
            }
        }
    }

    /// The documented ways to pay twice: a worker killed after Rekognition
    /// answered, and one whose DynamoDB stayed down for the rest of its time
    /// budget while it kept the answer (the record still QUEUED after it).
    /// Each call is charged to the upload the job held for that key.
    async fn allow(&mut self, job: &Job, calls: &BTreeMap<String, DetectCount>, killed: bool) {
        if calls.values().all(|c| c.charged == c.lost) {
            return;
        }
        let held = job_images(job);
        let (images, _) = self.records().await;
        for (key, count) in calls {
            let revision = held
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "(not in the job's spec)".into());
            let upload = (key.clone(), revision);
            let net = count.charged - count.lost;
            *self.charged.entry(upload.clone()).or_default() += net;
            let unwritten = killed
                || images
                    .get(key)
                    .is_some_and(|r| text(r, "status") == "QUEUED");
            if unwritten {
                *self.allowance.entry(upload).or_default() += net;
            }
        }
    }

    /// Sets a finished attempt's job state as Batch would (one retry of a
    /// failed attempt; a killed process is a host taken away) and returns
    /// the FAILED state event, if any.
    fn batch_result(&mut self, job: &Job, attempt: u32, ran: Option<Option<i32>>) -> Option<Value> {
        let (status, reason, exit_code) = match ran {
            None => ("FAILED", "Host EC2 (instance i-0c4a05) terminated.", None),
            Some(None) => ("FAILED", "Essential container in task exited", Some(4)),
            Some(Some(0)) => ("SUCCEEDED", "", None),
            Some(Some(_)) if attempt < 2 => ("SUBMITTED", "", None),
            Some(Some(code)) => (
                "FAILED",
                "Essential container in task exited",
                Some(i64::from(code)),
            ),
        };
        self.gateway.set_status(&job.id, status, reason, exit_code);
        (status == "FAILED").then(|| state_event(job, reason, "", exit_code))
    }

    async fn records(&self) -> (BTreeMap<String, Item>, BTreeMap<String, Vec<Item>>) {
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
                if key.is_empty() {
                    continue;
                }
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
            "chaos seed {}: rule broken for {key:?}: {what}\nhistory of the key:\n  {}\nfaults fired: {:?}",
            self.seed,
            history.join("\n  "),
            self.gateway.fault_log()
        );
    }
}

fn chaos_config(stack: &Stack) -> Config {
    Config::from_lookup(|k| {
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
    .expect("chaos config")
}

async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning on");
}

/// The FAILED state event Batch sends for `job` through EventBridge.
fn state_event(job: &Job, reason: &str, container: &str, exit_code: Option<i64>) -> Value {
    let index = job
        .id
        .split_once(':')
        .map(|(_, i)| i.parse::<u64>().expect("an index"));
    json!({
        "version": "0", "source": "aws.batch", "detail-type": "Batch Job State Change",
        "detail": {
            "jobId": job.id, "jobName": job.name, "jobQueue": job.queue,
            "status": "FAILED", "statusReason": reason,
            "parameters": job.parameters,
            "arrayProperties": index.map(|i| json!({"index": i})),
            "container": {"exitCode": exit_code, "reason": container}
        }
    })
}

/// What comes back after an invocation: nothing if it succeeded; the whole
/// delivery if it failed or died; for SQS, the messages it named failed.
fn redelivery(delivery: Delivery, result: Option<Result<Value, String>>) -> Option<Delivery> {
    let tries = delivery.tries + 1;
    let failed: BTreeSet<String> = match &result {
        Some(Ok(answer)) => answer["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
            .collect(),
        _ => return Some(Delivery { tries, ..delivery }),
    };
    let records: Vec<Value> = delivery.payload["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["messageId"]
                .as_str()
                .is_some_and(|id| failed.contains(id))
        })
        .cloned()
        .collect();
    (!records.is_empty()).then(|| Delivery {
        payload: json!({ "Records": records }),
        tries,
    })
}

fn outcome<T: std::fmt::Debug>(r: &Option<Result<T, String>>) -> String {
    match r {
        None => "killed".to_owned(),
        Some(Ok(v)) => format!("ok {v:?}"),
        Some(Err(e)) => format!("failed: {e}"),
    }
}

fn delta(
    before: &BTreeMap<String, DetectCount>,
    after: &BTreeMap<String, DetectCount>,
) -> BTreeMap<String, DetectCount> {
    after
        .iter()
        .map(|(key, now)| {
            let was = before.get(key).copied().unwrap_or_default();
            let d = DetectCount {
                charged: now.charged - was.charged,
                answered: now.answered - was.answered,
                lost: now.lost - was.lost,
            };
            (key.clone(), d)
        })
        .filter(|(_, d)| d.charged > 0)
        .collect()
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// The keys an S3 delivery names, straight or in SQS messages' bodies.
fn keys_of(payload: &Value) -> Vec<String> {
    payload["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| match r["body"].as_str() {
            Some(body) => serde_json::from_str(body)
                .map(|b| keys_of(&b))
                .unwrap_or_default(),
            None => r
                .pointer("/s3/object/key")
                .and_then(Value::as_str)
                .and_then(|k| labeler_core::key::decode_event_key(k).ok())
                .into_iter()
                .collect(),
        })
        .collect()
}

/// The keys a job's chunk holds.
fn job_keys(job: &Job) -> Vec<String> {
    job_images(job).into_iter().map(|(key, _)| key).collect()
}

/// The images (key and revision) a job's chunk holds, from its inline spec
/// (empty if the spec lives in a manifest).
fn job_images(job: &Job) -> Vec<Upload> {
    let Some(spec) = job.parameters.get("job") else {
        return Vec::new();
    };
    let spec: Value = serde_json::from_str(spec).unwrap_or_default();
    let chunks = spec
        .pointer("/images/inline")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = job
        .id
        .split_once(':')
        .and_then(|(_, i)| i.parse::<usize>().ok())
        .unwrap_or(0);
    chunks
        .get(index)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some((
                i["key"].as_str()?.to_owned(),
                i["revision"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The storm: the bucket changes while deliveries, jobs and the
/// reconciler run at once under faults and outages. Returns every change
/// made and the dead letters.
async fn storm(run: &mut Run) -> (Vec<Applied>, Vec<Delivery>) {
    let mut changes: VecDeque<(String, Change)> = plan(&mut run.rng, run.bucket.versioned).into();
    let mut applied = Vec::new();
    let mut queue = VecDeque::new();
    let mut dead = Vec::new();
    while !changes.is_empty() || !queue.is_empty() {
        run.weather(0.15);
        for _ in 0..run.rng.usize(0..=2) {
            if let Some((key, change)) = changes.pop_front() {
                applied.push(run.change(&key, change, &mut queue).await);
            }
        }
        let done = run.step(&mut queue, 0.5).await;
        run.settle(done, &mut queue, &mut dead, 0.4).await;
    }
    (applied, dead)
}

/// Calm: the outage ends, the dead letters are redriven, time passes (Batch
/// forgets finished jobs), jobs run and the reconciler runs to quiescence.
async fn calm(run: &mut Run, dead: Vec<Delivery>) -> bool {
    run.outage = None;
    run.gateway.outage(None);
    let mut queue: VecDeque<Delivery> = dead
        .into_iter()
        .map(|d| Delivery { tries: 0, ..d })
        .collect();
    for d in &queue {
        for key in keys_of(&d.payload) {
            run.note(&key, "redriven from the dead-letter queue".into());
        }
    }
    while !queue.is_empty() || !run.runnable().is_empty() {
        let done = run.step(&mut queue, 0.0).await;
        run.settle(done, &mut queue, &mut Vec::new(), 0.0).await;
    }
    if run.rng.bool() {
        run.gateway.forget_finished();
    }
    for _ in 0..12 {
        run.now = run
            .now
            .plus_secs(run.cfg.reconcile.after_secs + run.cfg.claim_lease_secs + 1);
        let report = dispatcher::dispatch::reconcile_now(&run.lanes[0].dispatch, &run.cfg, run.now)
            .await
            .expect("reconciler pass");
        while !run.runnable().is_empty() {
            let done = run.step(&mut VecDeque::new(), 0.0).await;
            run.settle(done, &mut VecDeque::new(), &mut Vec::new(), 0.0)
                .await;
        }
        let (images, _) = run.records().await;
        let queued = images
            .values()
            .filter(|r| text(r, "status") == "QUEUED")
            .count();
        if report.examined == 0 && queued == 0 {
            return true;
        }
    }
    false
}

/// What S3 holds under `key` at the end: the current version's id and
/// bytes, or `None` when nothing (or a delete marker) is current.
async fn current(run: &Run, key: &str) -> Option<(Option<String>, Vec<u8>)> {
    let got = run
        .bucket
        .s3
        .get_object()
        .bucket(&run.bucket.name)
        .key(key)
        .send()
        .await
        .ok()?;
    let version = got.version_id().map(str::to_owned);
    let bytes = got
        .body
        .collect()
        .await
        .expect("an object's bytes")
        .into_bytes()
        .to_vec();
    Some((version, bytes))
}

/// The labels a record holds.
fn labels(record: &Item) -> BTreeSet<String> {
    record
        .get("labels")
        .and_then(|l| l.as_l().ok())
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_m().ok()?.get("name")?.as_s().ok().cloned())
        .collect()
}

fn picture_labels(bytes: &[u8]) -> BTreeSet<String> {
    labels_of(bytes).into_iter().collect()
}

/// Versioned bucket: the record says what S3's current version is.
async fn judge_versioned(run: &Run, key: &str, record: Option<&Item>) {
    let status = record.map(|r| text(r, "status")).unwrap_or_default();
    match current(run, key).await {
        None if record.is_none() || status == "DELETED" => {}
        None => run.fail(
            key,
            format!("nothing is current in S3, but the record is {status}"),
        ),
        Some((_, bytes)) if bytes.is_empty() || key.ends_with(".txt") => {
            if status != "SKIPPED" || record.is_some_and(|r| text(r, "reason").is_empty()) {
                run.fail(key, format!("S3 holds no picture, but the record is {status:?} (want SKIPPED with a reason)"));
            }
        }
        Some((version, bytes)) => {
            let record =
                record.unwrap_or_else(|| run.fail(key, "a current picture has no record".into()));
            let (held, want) = (labels(record), picture_labels(&bytes));
            if status != "LABELED"
                || text(record, "version_id") != version.clone().unwrap_or_default()
                || held != want
            {
                run.fail(key, format!(
                    "S3's current version {version:?} has labels {want:?}; the record is {status} of version {:?} with {held:?} (reason {:?})",
                    text(record, "version_id"), text(record, "reason")
                ));
            }
        }
    }
}

/// Plain bucket: the record names the newest delivered change, and holds
/// the labels of a picture the key held at or after it.
async fn judge_plain(run: &Run, key: &str, record: Option<&Item>, changes: &[&Applied]) {
    let Some(newest) = changes
        .iter()
        .filter(|a| !a.record.is_null())
        .max_by_key(|a| &a.seq)
    else {
        return;
    };
    let status = record.map(|r| text(r, "status")).unwrap_or_default();
    let revision = labeler_core::Revision::from_sequencer(&newest.seq).expect("a sequencer");
    let at = record.map(|r| text(r, "revision")).unwrap_or_default();
    let allowed: Vec<BTreeSet<String>> = changes
        .iter()
        .filter(|a| a.seq >= newest.seq && a.change == Change::PutImage)
        .filter_map(|a| a.bytes.as_deref().map(picture_labels))
        .collect();
    // Gone at the end, or deleted after the newest delivered change (by a
    // delete whose event was lost, which a later lost upload undid).
    let gone = current(run, key).await.is_none()
        || changes
            .iter()
            .any(|a| a.seq > newest.seq && a.change == Change::Delete);
    let reason = record.map(|r| text(r, "reason")).unwrap_or_default();
    let fine = match newest.change {
        Change::Delete => record.is_none() || (status == "DELETED" && at == revision.as_str()),
        Change::PutEmpty | Change::PutText => {
            status == "SKIPPED" && at == revision.as_str() && !reason.is_empty()
        }
        _ if at != revision.as_str() => false,
        _ if status == "FAILED" => gone && reason.contains("cannot be read"),
        _ => status == "LABELED" && record.is_some_and(|r| allowed.contains(&labels(r))),
    };
    if !fine {
        run.fail(key, format!(
            "the newest delivered change is {:?} (seq {}); the record is {status:?} of revision {at:?} with {:?} (reason {reason:?}); pictures allowed: {allowed:?}",
            newest.change, newest.seq, record.map(labels)
        ));
    }
}

/// Label-index entries match the record's labels and upload.
fn judge_index(run: &Run, key: &str, record: Option<&Item>, entries: &[Item]) {
    let held: BTreeSet<String> = record
        .map(labels)
        .unwrap_or_default()
        .into_iter()
        .map(|n| format!("LABEL#{n}"))
        .collect();
    let indexed: BTreeSet<String> = entries
        .iter()
        .map(|e| text(e, "sk"))
        .filter(|sk| sk.starts_with("LABEL#"))
        .collect();
    let shown = if record.is_some_and(|r| text(r, "status") == "LABELED") {
        held
    } else {
        BTreeSet::new()
    };
    if shown != indexed {
        run.fail(
            key,
            format!("label-index entries {indexed:?} differ from the record's labels {shown:?}"),
        );
    }
    if let Some(stale) = entries
        .iter()
        .filter(|e| text(e, "sk").starts_with("LABEL#"))
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

/// DetectLabels is charged at most once per upload, and per key at most
/// once per image made current, plus the allowances counted.
fn judge_charges(run: &Run, applied: &[Applied]) {
    for (upload, net) in &run.charged {
        let allowance = run.allowance.get(upload).copied().unwrap_or(0);
        if *net > 1 + allowance {
            run.fail(&upload.0, format!("DetectLabels charged {net} times (net of answers lost in transit) for the upload of revision {} (allowed: {allowance} for workers killed or out of time after an answer)", upload.1));
        }
    }
    for (key, DetectCount { charged, lost, .. }) in run.gateway.detect_calls() {
        let owed = applied
            .iter()
            .filter(|a| a.key == key && a.owes_labels() && !a.record.is_null())
            .count() as u32;
        let allowance: u32 = run
            .allowance
            .iter()
            .filter(|((k, _), _)| *k == key)
            .map(|(_, n)| n)
            .sum();
        if charged > owed + allowance + lost {
            run.fail(&key, format!("DetectLabels charged {charged} times for {owed} images made current (allowed: {allowance} for workers killed or out of time after an answer, {lost} for answers lost in transit)"));
        }
    }
}

async fn chaos_run(seed: u64) {
    let mut run = Run::start(seed).await;
    let (applied, dead) = storm(&mut run).await;
    let redriven = dead.len();
    if !calm(&mut run, dead).await {
        let (images, _) = run.records().await;
        let stuck = images.iter().find(|(_, r)| text(r, "status") == "QUEUED");
        let key = stuck.map(|(k, _)| k.clone()).unwrap_or_default();
        run.fail(
            &key,
            "the reconciler did not reach quiescence: a record is still QUEUED".into(),
        );
    }
    let (images, entries) = run.records().await;
    let keys: BTreeSet<&String> = applied.iter().map(|a| &a.key).collect();
    for key in keys {
        let record = images.get(key.as_str());
        let changes: Vec<&Applied> = applied.iter().filter(|a| &a.key == key).collect();
        if run.bucket.versioned {
            judge_versioned(&run, key, record).await;
        } else {
            judge_plain(&run, key, record, &changes).await;
        }
        judge_index(
            &run,
            key,
            record,
            entries.get(key.as_str()).map_or(&[], Vec::as_slice),
        );
    }
    judge_charges(&run, &applied);
    eprintln!(
        "chaos seed {seed}: {}; every key converged",
        tally(&run, &applied, redriven)
    );
}

/// What a run covered, for its closing line (and the README's long run).
fn tally(run: &Run, applied: &[Applied], redriven: usize) -> String {
    let count = |change: Change| applied.iter().filter(|a| a.change == change).count();
    let mut seen = BTreeSet::new();
    let overwrites = applied
        .iter()
        .filter(|a| a.change == Change::PutImage && !seen.insert(&a.key))
        .count();
    let charged: u32 = run.gateway.detect_calls().values().map(|c| c.charged).sum();
    format!(
        "{} bucket, {}; uploads {} (overwrites {overwrites}), deletes {}, version deletes {}, undeletes {}; steps at once {} (held {}); faults {}; outage steps {} (calls refused {}); attempts never ran {}; redriven {redriven}; DetectLabels {charged}",
        if run.bucket.versioned { "versioned" } else { "plain" },
        if run.sqs { "through SQS" } else { "direct" },
        count(Change::PutImage) + count(Change::PutEmpty) + count(Change::PutText),
        count(Change::Delete),
        count(Change::DeleteVersion),
        count(Change::Undelete),
        run.steps_at_once,
        run.barriers,
        run.gateway.fault_log().len(),
        run.outage_steps,
        run.gateway.outage_calls(),
        run.never_ran_count,
    )
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
