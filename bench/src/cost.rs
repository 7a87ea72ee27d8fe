//! The cost model of `docs/cost.md`: what labeling one million images costs
//! on AWS, one Batch job per image versus packed jobs, computed from a small
//! table of prices (each with its source and the date it was read) and from
//! the per-image request counts the benchmarks measure against the
//! stand-ins. Edit the prices here; `make bench` regenerates the document.

use serde::Serialize;
use std::fmt::Write;

/// Date the prices below were looked up.
pub const PRICES_READ_ON: &str = "2026-11-23";

/// Where a price comes from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Source {
    /// The service.
    pub service: &'static str,
    /// AWS's own pricing page for the service.
    pub official: &'static str,
    /// A page the figure was actually read on, when the official page could
    /// not be retrieved with its figures (AWS renders them dynamically).
    pub read_at: Option<&'static str>,
    /// What was and was not checked.
    pub note: &'static str,
}

/// One price, us-east-1, as published: `published` dollars per `per`
/// (`per_units` of `unit`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Price {
    /// What is priced.
    pub what: &'static str,
    /// US dollars, as the price is published.
    pub published: f64,
    /// What the published price is for, e.g. "million requests".
    pub per: &'static str,
    /// How many `unit`s that is.
    pub per_units: f64,
    /// The unit counted, singular, e.g. "request".
    pub unit: &'static str,
    /// Where it comes from.
    pub source: Source,
}

impl Price {
    /// US dollars per `unit`.
    pub const fn usd(&self) -> f64 {
        self.published / self.per_units
    }
}

const fn price(
    what: &'static str,
    published: f64,
    per: &'static str,
    per_units: f64,
    unit: &'static str,
    source: Source,
) -> Price {
    Price {
        what,
        published,
        per,
        per_units,
        unit,
        source,
    }
}

const FARGATE: Source = Source {
    service: "AWS Fargate",
    official: "https://aws.amazon.com/fargate/pricing/",
    read_at: Some("https://www.vantage.sh/blog/fargate-pricing"),
    note: "The same page gives per-second billing with a one-minute minimum. The official page, read too, states billing from the start of the image download until the task ends, rounded up to the second, and Fargate Spot at up to 70% off, but renders its figures dynamically: they are as published there, not re-checked here",
};
const LAMBDA: Source = Source {
    service: "AWS Lambda",
    official: "https://aws.amazon.com/lambda/pricing/",
    read_at: Some("https://cloudchipr.com/blog/aws-lambda-pricing"),
    note: "Arm duration price for the first 7.5 billion GB-s a month. The request price is as published on the official page, not re-checked here",
};
const DYNAMODB: Source = Source {
    service: "Amazon DynamoDB",
    official: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    read_at: Some("https://airbyte.com/data-engineering-resources/dynamodb-pricing"),
    note: "On-demand, Standard table class. Some pages still show the prices from before AWS halved them in November 2024 ($1.25 / $0.25 per million). The official figures are as published there, not re-checked here",
};
const SQS: Source = Source {
    service: "Amazon SQS",
    official: "https://aws.amazon.com/sqs/pricing/",
    read_at: Some("https://cloudburn.io/blog/amazon-sqs-pricing"),
    note: "Standard queue, first 100 billion requests a month; every 64 KB chunk of a payload counts as one request. As published on the official page, not re-checked here",
};
const S3: Source = Source {
    service: "Amazon S3",
    official: "https://aws.amazon.com/s3/pricing/",
    read_at: Some("https://c3x.dev/blog/s3-request-fees-explained"),
    note: "S3 Standard. As published on the official page, not re-checked here",
};
const REKOGNITION: Source = Source {
    service: "Amazon Rekognition",
    official: "https://aws.amazon.com/rekognition/pricing/",
    read_at: Some("https://raw.githubusercontent.com/api-evangelist/amazon-rekognition/refs/heads/main/plans/amazon-rekognition-plans-pricing.yml"),
    note: "Group 2 APIs (DetectLabels), first million images a month, from a third-party transcription of the official page that states it was taken from that page on 2026-10-07. The cheaper tiers beyond the first million are as published on the official page, not re-checked here, and are not used for one million images a month",
};
const BATCH: Source = Source {
    service: "AWS Batch",
    official: "https://aws.amazon.com/batch/pricing/",
    read_at: None,
    note: "AWS Batch has no charge of its own beyond the compute it runs. As published on the official page, not re-checked here",
};

/// The prices the model uses (us-east-1).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Prices {
    /// Fargate Linux/ARM per vCPU-hour.
    pub fargate_arm_vcpu_hour: Price,
    /// Fargate Linux/ARM per GB-hour.
    pub fargate_arm_gb_hour: Price,
    /// Fargate Linux/x86 per vCPU-hour.
    pub fargate_x86_vcpu_hour: Price,
    /// Fargate Linux/x86 per GB-hour.
    pub fargate_x86_gb_hour: Price,
    /// Lambda requests.
    pub lambda_request: Price,
    /// Lambda Arm duration.
    pub lambda_arm_gb_second: Price,
    /// DynamoDB on-demand write request unit.
    pub dynamodb_wru: Price,
    /// DynamoDB on-demand read request unit.
    pub dynamodb_rru: Price,
    /// SQS standard request.
    pub sqs_request: Price,
    /// S3 PUT/COPY/POST/LIST request.
    pub s3_put: Price,
    /// S3 GET request.
    pub s3_get: Price,
    /// Rekognition DetectLabels, first million images a month.
    pub detect_labels: Price,
    /// AWS Batch.
    pub batch: Price,
}

/// The prices as read on [`PRICES_READ_ON`].
pub const PRICES: Prices = Prices {
    fargate_arm_vcpu_hour: price(
        "Fargate Linux/ARM vCPU",
        0.03238,
        "vCPU-hour",
        1.0,
        "vCPU-hour",
        FARGATE,
    ),
    fargate_arm_gb_hour: price(
        "Fargate Linux/ARM memory",
        0.00356,
        "GB-hour",
        1.0,
        "GB-hour",
        FARGATE,
    ),
    fargate_x86_vcpu_hour: price(
        "Fargate Linux/x86 vCPU",
        0.04048,
        "vCPU-hour",
        1.0,
        "vCPU-hour",
        FARGATE,
    ),
    fargate_x86_gb_hour: price(
        "Fargate Linux/x86 memory",
        0.004445,
        "GB-hour",
        1.0,
        "GB-hour",
        FARGATE,
    ),
    lambda_request: price(
        "Lambda requests",
        0.20,
        "million requests",
        1e6,
        "request",
        LAMBDA,
    ),
    lambda_arm_gb_second: price(
        "Lambda Arm duration",
        0.000_013_333_4,
        "GB-second",
        1.0,
        "GB-second",
        LAMBDA,
    ),
    dynamodb_wru: price(
        "DynamoDB on-demand writes",
        0.625,
        "million write request units",
        1e6,
        "write request unit",
        DYNAMODB,
    ),
    dynamodb_rru: price(
        "DynamoDB on-demand reads",
        0.125,
        "million read request units",
        1e6,
        "read request unit",
        DYNAMODB,
    ),
    sqs_request: price(
        "SQS standard requests",
        0.40,
        "million requests",
        1e6,
        "request",
        SQS,
    ),
    s3_put: price(
        "S3 PUT requests",
        0.005,
        "1,000 requests",
        1e3,
        "request",
        S3,
    ),
    s3_get: price(
        "S3 GET requests",
        0.0004,
        "1,000 requests",
        1e3,
        "request",
        S3,
    ),
    detect_labels: price(
        "Rekognition DetectLabels",
        0.001,
        "image",
        1.0,
        "image",
        REKOGNITION,
    ),
    batch: price("AWS Batch", 0.0, "job", 1.0, "job", BATCH),
};

/// What the model needs besides prices: settings of the deployment,
/// assumptions about AWS, and per-image counts measured by the benchmarks.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Images labeled in the month.
    pub images: f64,
    /// Labels DetectLabels returns per image (the stand-in answers this many).
    pub labels_per_image: usize,
    /// DynamoDB write units the dispatcher spends per image (claim and job
    /// record), measured.
    pub dispatcher_wru_per_image: f64,
    /// DynamoDB read units the worker spends per image, measured.
    pub worker_rru_per_image: f64,
    /// DynamoDB write units the worker spends per image, measured.
    pub worker_wru_per_image: f64,
    /// S3 PUTs (manifests) the dispatcher makes per image when packing, measured.
    pub manifest_puts_per_image: f64,
    /// Dispatcher duration of a one-image invocation, seconds, measured.
    pub lambda_seconds_single: f64,
    /// Dispatcher duration of a full SQS batch, seconds, measured.
    pub lambda_seconds_batch: f64,
    /// Messages per dispatcher invocation when packing (`sqs_batch_size`).
    pub sqs_batch_size: usize,
    /// `IMAGES_PER_JOB` when packing.
    pub images_per_job: usize,
    /// Worker `--concurrency` (the job definition's `LABELER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// Measured worker throughput as a fraction of its ideal at that
    /// concurrency.
    pub worker_efficiency: f64,
    /// Assumed DetectLabels latency on AWS, seconds.
    pub detect_labels_seconds: f64,
    /// Assumed billed Fargate time before the first image (image download,
    /// start), seconds.
    pub task_startup_seconds: f64,
    /// Worker task vCPUs (infra default).
    pub task_vcpu: f64,
    /// Worker task memory in GB (infra default).
    pub task_gb: f64,
    /// Dispatcher memory in GB (dispatcher/Cargo.toml).
    pub lambda_gb: f64,
    /// Share of images whose bytes another image already had (copies,
    /// moves, re-uploads), for the content-reuse figures: a stated
    /// assumption, not a measurement.
    pub duplicate_ratio: f64,
    /// Size of a content entry with `labels_per_image` labels, bytes, by
    /// DynamoDB's item-size rules (`labeler_core::schema::item_size`).
    pub content_entry_bytes: usize,
    /// The local backend's measured figures; `None` when not measured.
    pub local: Option<LocalInputs>,
}

/// What `bench --local` measured for the cost of the local backend and
/// the cascade.
#[derive(Debug, Clone, Serialize)]
pub struct LocalInputs {
    /// Seconds of one core per image the local model classifies (decode,
    /// resize and inference), measured.
    pub inference_seconds_per_core: f64,
    /// Share of images the cascade sent to DetectLabels, by corpus,
    /// measured.
    pub cascade_shares: Vec<(String, f64)>,
}

impl Inputs {
    /// Defaults read from the code and infra, with counts as the code makes
    /// them (used when no measurement is at hand, e.g. in tests).
    pub fn from_code() -> Self {
        Self {
            images: 1e6,
            labels_per_image: 10,
            dispatcher_wru_per_image: 2.0,
            worker_rru_per_image: 2.0,
            worker_wru_per_image: 2.0 * (1.0 + 10.0),
            manifest_puts_per_image: 0.0,
            lambda_seconds_single: 0.05,
            lambda_seconds_batch: 0.2,
            sqs_batch_size: 100,
            images_per_job: 100,
            worker_concurrency: 8,
            worker_efficiency: 1.0,
            detect_labels_seconds: 0.5,
            task_startup_seconds: 30.0,
            task_vcpu: 1.0,
            task_gb: 2.0,
            duplicate_ratio: 0.25,
            content_entry_bytes: content_entry_bytes(10),
            lambda_gb: 0.25,
            local: None,
        }
    }
}

/// CPU architecture of the Fargate tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arch {
    /// Graviton.
    Arm64,
    /// Intel/AMD.
    X86,
}

/// One line of a bill.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Service.
    pub service: &'static str,
    /// What is counted.
    pub what: String,
    /// How many units.
    pub quantity: f64,
    /// Unit.
    pub unit: &'static str,
    /// US dollars.
    pub usd: f64,
}

/// A bill for labeling `Inputs::images` images one way.
#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    /// Which design.
    pub scenario: &'static str,
    /// Fargate architecture.
    pub arch: Arch,
    /// The lines.
    pub lines: Vec<Line>,
}

impl Bill {
    /// Sum of the lines.
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    /// Sum of the lines of `service`.
    pub fn service(&self, service: &str) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.service == service)
            .map(|l| l.usd)
            .sum()
    }
}

/// Seconds of a task per image when DetectLabels labels it: the call's
/// latency shared by the images in flight, at the measured efficiency.
fn rekognition_seconds_per_image(inputs: &Inputs) -> f64 {
    inputs.detect_labels_seconds
        / (inputs.worker_concurrency.max(1) as f64 * inputs.worker_efficiency.clamp(0.01, 1.0))
}

/// Billed seconds of one Fargate task labeling `images` images at
/// `per_image` seconds each (one-minute minimum, whole seconds).
fn billed_seconds(inputs: &Inputs, images: usize, per_image: f64) -> f64 {
    let run = inputs.task_startup_seconds + images as f64 * per_image;
    run.max(60.0).ceil()
}

/// Billed seconds of one Fargate task labeling `images` images.
pub fn task_seconds(inputs: &Inputs, images: usize) -> f64 {
    billed_seconds(inputs, images, rekognition_seconds_per_image(inputs))
}

/// Fargate dollars per second of a task of `vcpu` vCPUs and `gb` GB.
fn per_task_second(arch: Arch, vcpu: f64, gb: f64) -> f64 {
    let (cpu, mem) = match arch {
        Arch::Arm64 => (
            PRICES.fargate_arm_vcpu_hour.usd(),
            PRICES.fargate_arm_gb_hour.usd(),
        ),
        Arch::X86 => (
            PRICES.fargate_x86_vcpu_hour.usd(),
            PRICES.fargate_x86_gb_hour.usd(),
        ),
    };
    (vcpu * cpu + gb * mem) / 3600.0
}

/// Fargate dollars for labeling all images in jobs of `images_per_job`.
pub fn fargate_usd(
    inputs: &Inputs,
    arch: Arch,
    images_per_job: usize,
    vcpu: f64,
    gb: f64,
) -> (f64, f64, f64) {
    let tasks = (inputs.images / images_per_job as f64).ceil();
    let seconds = task_seconds(inputs, images_per_job);
    (
        tasks,
        seconds,
        tasks * seconds * per_task_second(arch, vcpu, gb),
    )
}

fn line(service: &'static str, what: impl Into<String>, quantity: f64, price: &Price) -> Line {
    Line {
        service,
        what: what.into(),
        quantity,
        unit: price.unit,
        usd: quantity * price.usd(),
    }
}

/// The sample's design: S3 invokes the dispatcher once per image, one Batch
/// job (one Fargate task) per image.
pub fn one_job_per_image(inputs: &Inputs, arch: Arch) -> Bill {
    let n = inputs.images;
    let (tasks, seconds, fargate) = fargate_usd(inputs, arch, 1, inputs.task_vcpu, inputs.task_gb);
    let mut lines = common_lines(inputs);
    lines.push(Line {
        service: "Fargate",
        what: format!(
            "{} tasks × {seconds:.0} s billed, {} vCPU / {} GB",
            group(tasks as u64),
            inputs.task_vcpu,
            inputs.task_gb
        ),
        quantity: tasks,
        unit: "task",
        usd: fargate,
    });
    lines.push(line(
        "Batch",
        "SubmitJob calls (one per image)",
        n,
        &PRICES.batch,
    ));
    lines.push(line(
        "Lambda",
        "invocations (one per image)",
        n,
        &PRICES.lambda_request,
    ));
    lines.push(line(
        "Lambda",
        format!(
            "duration: {:.0} ms × {} GB per invocation",
            inputs.lambda_seconds_single * 1e3,
            inputs.lambda_gb
        ),
        n * inputs.lambda_seconds_single * inputs.lambda_gb,
        &PRICES.lambda_arm_gb_second,
    ));
    Bill {
        scenario: "one job per image",
        arch,
        lines,
    }
}

/// This project's queued design: S3 → SQS → dispatcher in batches, images
/// packed `images_per_job` to a job (array children for more).
pub fn packed(inputs: &Inputs, arch: Arch) -> Bill {
    let n = inputs.images;
    let (tasks, seconds, fargate) = fargate_usd(
        inputs,
        arch,
        inputs.images_per_job,
        inputs.task_vcpu,
        inputs.task_gb,
    );
    let invocations = (n / inputs.sqs_batch_size as f64).ceil();
    let mut lines = common_lines(inputs);
    lines.push(Line {
        service: "Fargate",
        what: format!(
            "{} tasks (array children) × {seconds:.0} s billed, {} vCPU / {} GB",
            group(tasks as u64),
            inputs.task_vcpu,
            inputs.task_gb
        ),
        quantity: tasks,
        unit: "task",
        usd: fargate,
    });
    lines.push(line(
        "Batch",
        "SubmitJob calls (one per invocation)",
        invocations,
        &PRICES.batch,
    ));
    lines.push(line(
        "Lambda",
        format!("invocations ({} messages each)", inputs.sqs_batch_size),
        invocations,
        &PRICES.lambda_request,
    ));
    lines.push(line(
        "Lambda",
        format!(
            "duration: {:.0} ms × {} GB per invocation",
            inputs.lambda_seconds_batch * 1e3,
            inputs.lambda_gb
        ),
        invocations * inputs.lambda_seconds_batch * inputs.lambda_gb,
        &PRICES.lambda_arm_gb_second,
    ));
    // S3 sends one message per event; the event source mapping receives and
    // deletes up to 10 messages per call.
    lines.push(line(
        "SQS",
        "SendMessage (by S3) + ReceiveMessage and DeleteMessageBatch (10 a call)",
        n * 1.2,
        &PRICES.sqs_request,
    ));
    if inputs.manifest_puts_per_image > 0.0 {
        lines.push(line(
            "S3",
            "manifest PUTs",
            n * inputs.manifest_puts_per_image,
            &PRICES.s3_put,
        ));
        lines.push(line(
            "S3",
            "manifest GETs (one per array child)",
            tasks,
            &PRICES.s3_get,
        ));
    }
    Bill {
        scenario: "packed array jobs",
        arch,
        lines,
    }
}

/// Lines both designs pay the same way: Rekognition, DynamoDB, and the GET
/// Rekognition makes on the image.
fn common_lines(inputs: &Inputs) -> Vec<Line> {
    let n = inputs.images;
    vec![
        line(
            "Rekognition",
            "DetectLabels, one per image",
            n,
            &PRICES.detect_labels,
        ),
        line(
            "DynamoDB",
            "dispatcher: conditional QUEUED claim (PutItem) + job record (UpdateItem)",
            n * inputs.dispatcher_wru_per_image,
            &PRICES.dynamodb_wru,
        ),
        line(
            "DynamoDB",
            "worker: consistent GetItem of the record + consistent Query of its label entries",
            n * inputs.worker_rru_per_image,
            &PRICES.dynamodb_rru,
        ),
        line(
            "DynamoDB",
            format!(
                "worker: TransactWriteItems (record + {} label entries, 2 units per KB each)",
                inputs.labels_per_image
            ),
            n * inputs.worker_wru_per_image,
            &PRICES.dynamodb_wru,
        ),
        line("S3", REKOGNITION_GET, n, &PRICES.s3_get),
        line(
            "S3",
            "worker: ranged GET of the image's first 64 KiB (its real format)",
            n,
            &PRICES.s3_get,
        ),
    ]
}

/// The S3 line of Rekognition's own GET of an image.
const REKOGNITION_GET: &str = "GET of the image by Rekognition";

/// The packed arm64 bill with the local model labeling every image: no
/// DetectLabels call and no GET by Rekognition; the worker GETs the whole
/// image instead, and each task runs longer by the measured inference time
/// per image (one inference per vCPU at once).
pub fn local_bill(inputs: &Inputs, local: &LocalInputs) -> Bill {
    let mut bill = packed(inputs, Arch::Arm64);
    bill.scenario = "packed, local model";
    bill.lines
        .retain(|l| !matches!(l.service, "Rekognition" | "Fargate") && l.what != REKOGNITION_GET);
    let ipj = inputs.images_per_job;
    let tasks = (inputs.images / ipj as f64).ceil();
    let per_image = local.inference_seconds_per_core / inputs.task_vcpu.max(0.01);
    let seconds = billed_seconds(inputs, ipj, per_image);
    bill.lines.push(Line {
        service: "Fargate",
        what: format!(
            "{} tasks × {seconds:.0} s billed, {} vCPU / {} GB, {:.1} ms of one core per image",
            group(tasks as u64),
            inputs.task_vcpu,
            inputs.task_gb,
            local.inference_seconds_per_core * 1e3
        ),
        quantity: tasks,
        unit: "task",
        usd: tasks * seconds * per_task_second(Arch::Arm64, inputs.task_vcpu, inputs.task_gb),
    });
    bill.lines.push(line(
        "S3",
        "worker: GET of the whole image for the local model",
        inputs.images,
        &PRICES.s3_get,
    ));
    bill
}

/// The local bill plus DetectLabels, and Rekognition's GET of the image,
/// for the `share` of images the cascade sends on. Their calls overlap the
/// other images' inference, so the tasks take no longer.
pub fn cascade_bill(inputs: &Inputs, local: &LocalInputs, share: f64) -> Bill {
    let mut bill = local_bill(inputs, local);
    bill.scenario = "packed, cascade";
    let escalated = inputs.images * share.clamp(0.0, 1.0);
    bill.lines.push(line(
        "Rekognition",
        format!("DetectLabels for the {:.1}% escalated", 100.0 * share),
        escalated,
        &PRICES.detect_labels,
    ));
    bill.lines.push(line(
        "S3",
        format!("{REKOGNITION_GET} (escalated only)"),
        escalated,
        &PRICES.s3_get,
    ));
    bill
}

/// The "Local model and cascade" section of `docs/cost.md`.
fn local_section(inputs: &Inputs) -> String {
    let mut out = String::from("## Local model and cascade\n\n");
    let Some(local) = &inputs.local else {
        out.push_str(
            "Not measured in this run (`bench --local` needs `make model` and the release \
             worker).\n\n",
        );
        return out;
    };
    let _ = writeln!(
        out,
        "`LABELER_BACKEND=local` labels every image with EfficientNet-Lite0 in the worker: no \
         DetectLabels call and no GET by Rekognition, a GET of the whole image by the worker \
         instead, and {:.1} ms of one core per image (the mean `LocalLatency` of the one-slot \
         run in the [benchmarks](benchmarks.md), measured on an x86 CPU; Graviton's will \
         differ) added to each task's time. `cascade` pays that, plus DetectLabels and \
         Rekognition's GET for the share of images whose most probable local class is below \
         `--cascade-below`; the shares are the measured ones of the benchmark's two small \
         corpora, not of your photos. Packed, arm64, {} images:\n",
        local.inference_seconds_per_core * 1e3,
        qty(inputs.images)
    );
    let rekognition = packed(inputs, Arch::Arm64);
    let mut bills = vec![("rekognition".to_owned(), rekognition.clone())];
    bills.push(("local".to_owned(), local_bill(inputs, local)));
    for (corpus, share) in &local.cascade_shares {
        bills.push((
            format!("cascade, {corpus} corpus share {:.1}%", 100.0 * share),
            cascade_bill(inputs, local, *share),
        ));
    }
    out.push_str(&backend_table(&bills, rekognition.total()));
    let _ = writeln!(out, "\n{}", local_compute(inputs, local, &rekognition));
    out
}

/// The bills of the backends side by side, against `reference`.
fn backend_table(bills: &[(String, Bill)], reference: f64) -> String {
    let mut out = String::from(
        "| backend | DetectLabels calls | Rekognition | Fargate | everything else | total | total / rekognition |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, bill) in bills {
        let calls: f64 = bill
            .lines
            .iter()
            .filter(|l| l.service == "Rekognition")
            .map(|l| l.quantity)
            .sum();
        // An empty sum is -0.0: adding 0.0 keeps "$-0.000" out of the table.
        let (total, rek, fargate) = (
            bill.total(),
            bill.service("Rekognition") + 0.0,
            bill.service("Fargate"),
        );
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {:.3} |",
            qty(calls),
            usd(rek),
            usd(fargate),
            usd(total - rek - fargate),
            usd(total),
            total / reference
        );
    }
    out
}

/// What the model's CPU time amounts to, and whether the one-minute
/// minimum hides it.
fn local_compute(inputs: &Inputs, local: &LocalInputs, rekognition: &Bill) -> String {
    let vcpu_hours = inputs.images * local.inference_seconds_per_core / 3600.0;
    let fargate = local_bill(inputs, local).service("Fargate");
    format!(
        "The model's own CPU time for {} images is {vcpu_hours:.1} vCPU-hours ({} at the arm64 \
         vCPU price). Billed Fargate goes from {} with Rekognition to {} with the local model: \
         a job of {} images takes {:.1} s of inference plus {} s of start-up, against Fargate's \
         one-minute minimum per task. Every 1% of images the cascade escalates adds {} per {} \
         images.\n",
        qty(inputs.images),
        usd(vcpu_hours * PRICES.fargate_arm_vcpu_hour.usd()),
        usd(rekognition.service("Fargate")),
        usd(fargate),
        inputs.images_per_job,
        inputs.images_per_job as f64 * local.inference_seconds_per_core
            / inputs.task_vcpu.max(0.01),
        inputs.task_startup_seconds,
        usd(0.01 * inputs.images * (PRICES.detect_labels.usd() + PRICES.s3_get.usd())),
        qty(inputs.images)
    )
}

fn usd(v: f64) -> String {
    if v >= 100.0 {
        format!("${v:.0}")
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.3}")
    }
}

fn qty(v: f64) -> String {
    if v >= 1e6 {
        format!("{} M", trim(format!("{:.2}", v / 1e6)))
    } else if v >= 1e4 {
        format!("{} k", trim(format!("{:.1}", v / 1e3)))
    } else {
        group(v.round() as u64)
    }
}

/// Drops trailing zeros of a decimal: "24.00" → "24", "1.20" → "1.2".
fn trim(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Thousands separators: 1000000 → "1,000,000".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes of a content entry holding `labels` labels shaped like the
/// stand-in's (a parent, a category, one instance each).
pub fn content_entry_bytes(labels: usize) -> usize {
    use labeler_core::reuse::{entry, Content, ContentKey};
    use labeler_core::schema::{item_size, BoundingBox, Instance, Label};
    let image = labeler_core::ImageRef {
        bucket: "image-labeler-images-123456789012-us-east-1".into(),
        key: "photos/2026/11/IMG_0001.jpg".into(),
        revision: labeler_core::Revision::from_sequencer("0062E8F0A1B2C3D4E5").expect("hex"),
        version_id: None,
        etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
        size: Some(183_520),
    };
    let content = Content {
        sha256: [0x9b; 32],
        size: 183_520,
    };
    let key = ContentKey::new(&content, &labeler_core::LabelOptions::default());
    let labels: Vec<Label> = (0..labels)
        .map(|i| Label {
            name: format!("Label {i}"),
            confidence: 99.0 - i as f32,
            parents: vec!["Parent".into()],
            categories: vec!["Category".into()],
            instances: vec![Instance {
                confidence: 95.0,
                bounding_box: BoundingBox {
                    left: 0.1,
                    top: 0.1,
                    width: 0.5,
                    height: 0.5,
                },
            }],
        })
        .collect();
    let now = labeler_core::store::Clock::now();
    let detected = labeler_core::labeling::Detected::as_is(&labels, Some("3.0"));
    item_size(&entry(&key, &image, &detected, now, 30))
}

/// The packed arm64 bill with content reuse at `ratio` duplicates: fewer
/// DetectLabels calls (and Rekognition's GETs of the image), plus per image
/// the worker's GET that hashes the bytes and one eventually consistent
/// `GetItem` of the content entry, and per DetectLabels call one `PutItem`
/// of the entry and the `HEAD` (If-Match) that checks the bytes did not
/// change. Returns (total, saving).
pub fn with_reuse(inputs: &Inputs, ratio: f64) -> (f64, f64) {
    let base = packed(inputs, Arch::Arm64).total();
    let n = inputs.images;
    let kb = inputs.content_entry_bytes as f64 / 1024.0;
    let lookup_rru = 0.5 * (kb / 4.0).ceil().max(1.0);
    let entry_wru = kb.ceil().max(1.0);
    let reused = n * ratio;
    let detected = n - reused;
    let saved = reused * (PRICES.detect_labels.usd() + PRICES.s3_get.usd());
    let added = n * (lookup_rru * PRICES.dynamodb_rru.usd() + PRICES.s3_get.usd())
        + detected * (entry_wru * PRICES.dynamodb_wru.usd() + PRICES.s3_get.usd());
    let total = base - saved + added;
    (total, base - total)
}

/// `docs/cost.md`.
pub fn render(inputs: &Inputs, measured_on: &str) -> String {
    let mut out = String::new();
    let n = inputs.images;
    let bills = [
        one_job_per_image(inputs, Arch::Arm64),
        one_job_per_image(inputs, Arch::X86),
        packed(inputs, Arch::Arm64),
        packed(inputs, Arch::X86),
    ];
    let _ = writeln!(out, "# Cost model\n");
    let _ = writeln!(
        out,
        "<!-- Generated by `make bench` (bench/src/cost.rs) from the price table there and the \
         request counts measured by the benchmarks; edit the prices in that file, not here. -->\n"
    );
    let _ = writeln!(
        out,
        "What labeling **{} images in a month** costs in us-east-1, for the sample's design (one \
         Batch job, and so one Fargate task, per image) and for this project's queued design \
         (S3 → SQS → dispatcher in batches of {}, `IMAGES_PER_JOB={}`, array children). Prices \
         were looked up on {PRICES_READ_ON}; request counts per image were measured against the \
         loopback stand-ins on {measured_on} (see [benchmarks](benchmarks.md)).\n",
        qty(n),
        inputs.sqs_batch_size,
        inputs.images_per_job
    );

    let _ = writeln!(out, "## Per {} images\n", qty(n));
    let _ = writeln!(
        out,
        "| design | Fargate | total | Rekognition | everything else | Rekognition's share |\n|---|---|---:|---:|---:|---:|"
    );
    for bill in &bills {
        let total = bill.total();
        let rek = bill.service("Rekognition");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1}% |",
            bill.scenario,
            match bill.arch {
                Arch::Arm64 => "arm64",
                Arch::X86 => "x86",
            },
            usd(total),
            usd(rek),
            usd(total - rek),
            100.0 * rek / total
        );
    }
    let per_image = bills[0].service("Fargate") / n;
    let packed_fargate = bills[2].service("Fargate") / n;
    let _ = writeln!(
        out,
        "\nOne job per image pays Fargate's one-minute minimum for every image: {} of Fargate per \
         image on arm64, against {} per image when {} images share a task — {:.0}× less. Packed, \
         Rekognition is {:.1}% of the bill; the pipeline around it (Fargate, Lambda, DynamoDB, \
         SQS, S3) is the rest.\n",
        usd_fine(per_image),
        usd_fine(packed_fargate),
        inputs.images_per_job,
        per_image / packed_fargate,
        100.0 * bills[2].service("Rekognition") / bills[2].total(),
    );

    for bill in [&bills[0], &bills[2]] {
        let _ = writeln!(
            out,
            "### {} (arm64), where the money goes\n",
            capitalise(bill.scenario)
        );
        let _ = writeln!(
            out,
            "| service | what | quantity | cost | share |\n|---|---|---:|---:|---:|"
        );
        let total = bill.total();
        let mut lines: Vec<&Line> = bill.lines.iter().collect();
        lines.sort_by(|a, b| b.usd.total_cmp(&a.usd));
        for l in lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} {} | {} | {:.2}% |",
                l.service,
                l.what,
                qty(l.quantity),
                plural(l.unit, l.quantity),
                usd(l.usd),
                100.0 * l.usd / total
            );
        }
        let _ = writeln!(out, "| **total** | | | **{}** | 100% |\n", usd(total));
    }

    let _ = writeln!(out, "## Content reuse\n");
    let kb = inputs.content_entry_bytes as f64 / 1024.0;
    let _ = writeln!(
        out,
        "Copies, moves and re-uploads carry the same bytes under a new key. With content reuse \
         (`LABELER_REUSE_LABELS`, on by default) the worker labels them from a content entry \
         (same ETag, size and options) instead of calling DetectLabels: each image then costs one \
         eventually consistent `GetItem` of the entry ({:.1} KB with {} labels), and each \
         DetectLabels call one `PutItem` of it. Packed, arm64, {} images, by the share of \
         duplicates (an assumption about your bucket; {:.0}% is the figure quoted):\n",
        kb,
        inputs.labels_per_image,
        qty(n),
        100.0 * inputs.duplicate_ratio
    );
    let _ = writeln!(
        out,
        "| duplicates | DetectLabels calls | total | saving |\n|---:|---:|---:|---:|"
    );
    let off = packed(inputs, Arch::Arm64).total();
    let _ = writeln!(out, "| reuse off | {} | {} | — |", qty(n), usd(off));
    let mut ratios = vec![0.0, 0.1, 0.25, 0.5];
    if !ratios.contains(&inputs.duplicate_ratio) {
        ratios.push(inputs.duplicate_ratio);
        ratios.sort_by(f64::total_cmp);
    }
    for ratio in ratios {
        let (total, saving) = with_reuse(inputs, ratio);
        let _ = writeln!(
            out,
            "| {:.0}% | {} | {} | {} ({:.1}%) |",
            100.0 * ratio,
            qty(n * (1.0 - ratio)),
            usd(total),
            usd(saving),
            100.0 * saving / off
        );
    }
    let _ = writeln!(
        out,
        "\nWith no duplicates at all reuse costs its lookups and entries (the first row's \
         negative saving); one duplicate in a few hundred images pays for them.\n"
    );

    out.push_str(&local_section(inputs));

    let _ = writeln!(out, "## Images per job\n");
    let _ = writeln!(
        out,
        "Fargate for {} images on arm64 by `IMAGES_PER_JOB`, with {} s of billed start-up per \
         task, {} s per DetectLabels call, {} images in flight per worker at the measured \
         efficiency of {:.0}%:\n",
        qty(n),
        inputs.task_startup_seconds,
        inputs.detect_labels_seconds,
        inputs.worker_concurrency,
        100.0 * inputs.worker_efficiency
    );
    let _ = writeln!(
        out,
        "| images per job | tasks | billed per task | {} vCPU / {} GB | 0.25 vCPU / 0.5 GB |\n|---:|---:|---:|---:|---:|",
        inputs.task_vcpu, inputs.task_gb
    );
    for ipj in [1, 10, 100, 1_000, 10_000] {
        let (tasks, seconds, big) =
            fargate_usd(inputs, Arch::Arm64, ipj, inputs.task_vcpu, inputs.task_gb);
        let (_, _, small) = fargate_usd(inputs, Arch::Arm64, ipj, 0.25, 0.5);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            group(ipj as u64),
            qty(tasks),
            duration(seconds),
            usd(big),
            usd(small)
        );
    }
    let _ = writeln!(
        out,
        "\nUp to about {} images a job still fit in the one-minute minimum; beyond that a job \
         pays for its own time and the saving flattens, while a failed job costs more to redo. \
         AWS advises jobs of 3–5 minutes. The worker's measured peak memory (see the \
         benchmarks) fits the smallest Fargate size; the infra default is {} vCPU / {} GB. \
         Fargate Spot is up to 70% cheaper than the prices above.\n",
        fits_in_a_minute(inputs),
        inputs.task_vcpu,
        inputs.task_gb
    );

    let _ = writeln!(out, "## Where the time goes\n");
    let per_image_ms = 1e3 * inputs.detect_labels_seconds;
    let _ = writeln!(
        out,
        "Per image the worker makes one DetectLabels call (assumed {per_image_ms:.0} ms on AWS) and \
         three DynamoDB calls (a consistent read of the record, a consistent query of its label \
         entries, one transaction), each a few milliseconds. The dispatcher spends {:.1} ms of \
         Lambda time per image when it receives {} at a time, {:.0} ms when it receives one. \
         Against the stand-ins the worker reaches {:.0}% of the rate DetectLabels latency allows \
         at concurrency {}: its own overhead is the remaining {:.0}%.\n",
        1e3 * inputs.lambda_seconds_batch / inputs.sqs_batch_size as f64,
        inputs.sqs_batch_size,
        1e3 * inputs.lambda_seconds_single,
        100.0 * inputs.worker_efficiency,
        inputs.worker_concurrency,
        100.0 * (1.0 - inputs.worker_efficiency).max(0.0)
    );

    let _ = writeln!(out, "## Requests per image\n");
    let _ = writeln!(
        out,
        "Counted by the stand-ins while the real dispatcher and worker ran (DynamoDB units by \
         DynamoDB's item-size rules, approximated), for an image that is labeled once with {} \
         labels:\n",
        inputs.labels_per_image
    );
    let _ = writeln!(
        out,
        "| who | calls | DynamoDB units |\n|---|---|---:|\n\
         | dispatcher | conditional `PutItem` (QUEUED claim), `UpdateItem` (job id), ⌈images/100⌉ `SubmitJob`, a manifest `PutObject` only when a job's spec exceeds 20 KiB | {:.2} WRU |\n\
         | worker | consistent `GetItem`, conditional `UpdateItem` (take), ranged `GetObject` (first 64 KiB: the real format), `DetectLabels`, consistent `Query` (older label entries), `TransactWriteItems` (record update + one put per label); with content reuse an eventually consistent `GetItem` and a `PutItem` of the content entry (not in the measured units: the benchmark's images have no ETag; see [content reuse](#content-reuse)) | {:.2} RRU, {:.2} WRU |\n",
        inputs.dispatcher_wru_per_image, inputs.worker_rru_per_image, inputs.worker_wru_per_image
    );
    let _ = writeln!(
        out,
        "Redelivered events, Batch retries and deletes add calls (a redelivery costs one failed \
         conditional `PutItem`; a retried job one `GetItem` per image already labeled), not \
         counted here.\n"
    );

    let _ = writeln!(out, "## Prices\n");
    let _ = writeln!(out, "us-east-1, looked up on {PRICES_READ_ON}.\n");
    let _ = writeln!(out, "| price | value | source |\n|---|---|---|");
    let p = &PRICES;
    let mut sources: Vec<Source> = Vec::new();
    for price in [
        &p.detect_labels,
        &p.fargate_arm_vcpu_hour,
        &p.fargate_arm_gb_hour,
        &p.fargate_x86_vcpu_hour,
        &p.fargate_x86_gb_hour,
        &p.lambda_request,
        &p.lambda_arm_gb_second,
        &p.dynamodb_wru,
        &p.dynamodb_rru,
        &p.sqs_request,
        &p.s3_put,
        &p.s3_get,
        &p.batch,
    ] {
        let n = match sources
            .iter()
            .position(|s| s.official == price.source.official)
        {
            Some(i) => i + 1,
            None => {
                sources.push(price.source);
                sources.len()
            }
        };
        let _ = writeln!(
            out,
            "| {} | **${}** per {} | [{n}] |",
            price.what,
            dollars(price.published),
            price.per
        );
    }
    let _ = writeln!(out, "\nSources:\n");
    for (i, source) in sources.iter().enumerate() {
        let read = match source.read_at {
            Some(url) => format!(" Figures read on {PRICES_READ_ON} at <{url}>."),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{}. {}: official page <{}>.{read} {}.",
            i + 1,
            source.service,
            source.official,
            capitalise(source.note)
        );
    }
    let _ = writeln!(out, "\n## Assumptions\n");
    let _ = writeln!(
        out,
        "| assumption | value | why |\n|---|---|---|\n\
         | DetectLabels latency on AWS | {} s | not measurable here; only the worker's time per image depends on it |\n\
         | billed Fargate start-up per task | {} s | Fargate bills from the start of the image download; not measurable here |\n\
         | worker task | {} vCPU / {} GB, concurrency {} | `infra/variables.tf` defaults, `infra/job-definition.json` |\n\
         | dispatcher | {} GB, Arm | `dispatcher/Cargo.toml` `[package.metadata.lambda.deploy]` |\n\
         | dispatcher duration | measured against stand-ins answering in 10 ms | DynamoDB answers in single-digit milliseconds; a slower SubmitJob adds its latency once per invocation |\n\
         | SQS batch | {} messages, one image each | `infra/variables.tf` `sqs_batch_size` default |\n\
         | labels per image | {} | what the stand-in answers; the record and its label entries grow with it |\n",
        inputs.detect_labels_seconds,
        inputs.task_startup_seconds,
        inputs.task_vcpu,
        inputs.task_gb,
        inputs.worker_concurrency,
        inputs.lambda_gb,
        inputs.sqs_batch_size,
        inputs.labels_per_image
    );
    let _ = writeln!(
        out,
        "Not modelled: storage (DynamoDB items, S3 objects), CloudWatch Logs, data transfer, \
         and fixed monthly costs such as the interface VPC endpoints (see the README). Uploading \
         the images (S3 PUTs) is the user's own cost, not the pipeline's."
    );
    out
}

fn usd_fine(v: f64) -> String {
    if v >= 0.001 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

fn plural(unit: &str, quantity: f64) -> String {
    if (quantity - 1.0).abs() < f64::EPSILON || unit.ends_with('s') {
        unit.to_owned()
    } else {
        format!("{unit}s")
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn duration(seconds: f64) -> String {
    if seconds >= 120.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

fn fits_in_a_minute(inputs: &Inputs) -> usize {
    let per_image = rekognition_seconds_per_image(inputs);
    ((60.0 - inputs.task_startup_seconds).max(0.0) / per_image) as usize
}

/// A published price as written: at least two decimals ($0.20, $0.625).
fn dollars(v: f64) -> String {
    let text = format!("{v}");
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, decimals)) if decimals.len() < 2 => format!("{text}0"),
        Some(_) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_per_image_pays_a_minute_per_image() {
        let inputs = Inputs::from_code();
        let (tasks, seconds, usd) = fargate_usd(&inputs, Arch::Arm64, 1, 1.0, 2.0);
        assert_eq!(tasks, 1e6);
        assert_eq!(seconds, 60.0);
        let hourly = 0.03238 + 2.0 * 0.00356;
        assert!((usd - 1e6 * 60.0 * hourly / 3600.0).abs() < 1e-6);
    }

    #[test]
    fn reuse_saves_rekognition_in_proportion_to_duplicates_and_costs_little_without_any() {
        let inputs = Inputs::from_code();
        let off = packed(&inputs, Arch::Arm64).total();
        let (none, lost) = with_reuse(&inputs, 0.0);
        assert!(
            lost < 0.0 && -lost < 0.01 * off,
            "lookups cost under 1%: {lost}"
        );
        assert!((none - off + lost).abs() < 1e-9);
        let (_, quarter) = with_reuse(&inputs, 0.25);
        let (_, half) = with_reuse(&inputs, 0.5);
        let rekognition = inputs.images * PRICES.detect_labels.usd();
        assert!(quarter > 0.2 * rekognition && quarter < 0.25 * rekognition);
        assert!((half - quarter) > 0.24 * rekognition);
        assert!(inputs.content_entry_bytes > 500 && inputs.content_entry_bytes < 8 * 1024);
        assert!(render(&inputs, "2026-11-30").contains("## Content reuse"));
    }

    #[test]
    fn packed_jobs_leave_rekognition_as_nearly_all_of_the_bill() {
        let inputs = Inputs::from_code();
        let bill = packed(&inputs, Arch::Arm64);
        let share = bill.service("Rekognition") / bill.total();
        assert!(share > 0.9, "{share}");
        let single = one_job_per_image(&inputs, Arch::Arm64);
        assert!(single.service("Fargate") > 50.0 * bill.service("Fargate"));
    }

    fn measured(inference_seconds_per_core: f64, shares: &[f64]) -> LocalInputs {
        LocalInputs {
            inference_seconds_per_core,
            cascade_shares: shares.iter().map(|s| ("demo".to_owned(), *s)).collect(),
        }
    }

    #[test]
    fn a_cascade_that_escalates_a_tenth_pays_a_tenth_of_rekognition() {
        let inputs = Inputs::from_code();
        let local = measured(0.03, &[0.1]);
        let rekognition = packed(&inputs, Arch::Arm64).service("Rekognition");

        let cascade = cascade_bill(&inputs, &local, 0.1);
        let alone = local_bill(&inputs, &local);

        assert!((cascade.service("Rekognition") - 0.1 * rekognition).abs() < 1e-9);
        let gets = 0.1 * inputs.images * PRICES.s3_get.usd();
        assert!((cascade.total() - alone.total() - 0.1 * rekognition - gets).abs() < 1e-9);
        assert_eq!(cascade_bill(&inputs, &local, 0.0).total(), alone.total());
    }

    #[test]
    fn the_local_backend_drops_rekognition_and_pays_fargate_for_its_inference() {
        let inputs = Inputs::from_code();
        let packed_bill = packed(&inputs, Arch::Arm64);

        // One second of a core per image: 100 images take 30 s + 100 s.
        let slow = local_bill(&inputs, &measured(1.0, &[]));
        let fast = local_bill(&inputs, &measured(0.01, &[]));

        assert_eq!(slow.service("Rekognition"), 0.0);
        let tasks = inputs.images / inputs.images_per_job as f64;
        let hourly = 0.03238 + 2.0 * 0.00356;
        assert!((slow.service("Fargate") - tasks * 130.0 * hourly / 3600.0).abs() < 1e-6);
        assert_eq!(
            fast.service("Fargate"),
            packed_bill.service("Fargate"),
            "a fast model still fits in the one-minute minimum"
        );
        assert_eq!(
            slow.service("S3"),
            packed_bill.service("S3"),
            "one GET for another"
        );
        assert!(fast.total() < 0.05 * packed_bill.total());
    }

    #[test]
    fn the_document_prices_the_measured_cascade_shares_or_says_they_were_not_measured() {
        let mut inputs = Inputs::from_code();
        assert!(render(&inputs, "today").contains("Not measured in this run"));
        inputs.local = Some(measured(0.03, &[0.25]));
        let doc = render(&inputs, "today");
        assert!(
            doc.contains("| cascade, demo corpus share 25.0% | 250 k |"),
            "{doc}"
        );
        assert!(doc.contains("| rekognition | 1 M |"), "{doc}");
        assert!(doc.contains("| local | 0 | $0.000 |"), "{doc}");
    }

    #[test]
    fn numbers_are_written_for_people() {
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(999), "999");
        assert_eq!(qty(24e6), "24 M");
        assert_eq!(qty(1.2e6), "1.2 M");
        assert_eq!(qty(10_000.0), "10 k");
        assert_eq!(dollars(0.2), "0.20");
        assert_eq!(dollars(0.625), "0.625");
        assert_eq!(dollars(0.0), "0.00");
    }

    #[test]
    fn the_document_cites_every_price() {
        let doc = render(&Inputs::from_code(), "today");
        for url in [FARGATE, LAMBDA, DYNAMODB, SQS, S3, REKOGNITION, BATCH].map(|s| s.official) {
            assert!(doc.contains(url), "{url} missing");
        }
        assert!(doc.contains("not re-checked here"));
    }
}
