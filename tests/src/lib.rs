//! Test harness for image-labeler's integration tests: a moto server on
//! loopback (the project's stand-in for AWS) and the resources the pipeline
//! needs in it.
//!
//! moto comes from the project's virtualenv (`make setup` installs the
//! pinned `moto[server]` into `.venv`). A test that needs it calls
//! [`Moto::start`], which fails loudly if it is missing: nothing is skipped.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A program installed in the project's virtualenv, or a panic that says how
/// to install it.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` (it installs the pinned local tooling into .venv)",
        path.display()
    );
    path
}

/// A moto server on 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its port.
    pub port: u16,
}

/// Region every local resource lives in.
pub const REGION: &str = "us-east-1";

impl Moto {
    /// Starts moto on a free loopback port, waits until it answers, and turns
    /// off Docker for Batch (jobs are accepted and tracked, not run).
    pub fn start() -> Moto {
        let port = free_port();
        let log_dir = repo_root().join("target/moto-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/moto-logs");
        let log = std::fs::File::create(log_dir.join(format!("moto-{port}.log")))
            .expect("create moto log");
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http(port, "GET", "/moto-api/data.json", "").is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 60 s; see target/moto-logs/moto-{port}.log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = http(
            port,
            "POST",
            "/moto-api/config",
            r#"{"batch":{"use_docker":false}}"#,
        )
        .expect("configure moto");
        assert!(
            (200..300).contains(&status),
            "moto refused its config: {status} {body}"
        );
        moto
    }

    /// SDK configuration pointing every client at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// Environment that points a child process's AWS SDK at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Minimal HTTP/1.1 request on loopback; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Names of the resources one test stack uses.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Images bucket.
    pub bucket: String,
    /// Results table.
    pub table: String,
    /// Batch job queue name.
    pub job_queue: String,
    /// Batch job definition name.
    pub job_definition: String,
    /// SQS queue receiving the bucket's notifications.
    pub events_queue_url: String,
}

impl Stack {
    /// Environment the dispatcher needs for this stack.
    pub fn dispatcher_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("JOB_QUEUE", self.job_queue.clone()),
            ("JOB_DEFINITION", self.job_definition.clone()),
            ("TABLE_NAME", self.table.clone()),
        ]
    }
}

/// Creates bucket (with S3 → SQS notifications), table, Batch compute
/// environment, job queue and job definition.
pub async fn provision(config: &SdkConfig) -> Stack {
    let stack = Stack {
        bucket: "photos-bucket".into(),
        table: "image-labels".into(),
        job_queue: "image-labeler".into(),
        job_definition: "image-labeler-worker".into(),
        events_queue_url: String::new(),
    };
    let s3 = s3_client(config);
    s3.create_bucket()
        .bucket(&stack.bucket)
        .send()
        .await
        .expect("create bucket");
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue_url = sqs
        .create_queue()
        .queue_name("image-events")
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let queue_arn = format!("arn:aws:sqs:{REGION}:123456789012:image-events");
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(&stack.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .events(Event::from("s3:ObjectRemoved:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("bucket notification");

    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    labeler_core::table::create_table_request(&dynamodb, &stack.table)
        .send()
        .await
        .expect("create table");

    let iam = aws_sdk_iam::Client::new(config);
    let role = iam
        .create_role()
        .role_name("batch-service")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batch.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("create role")
        .role
        .expect("role")
        .arn;
    let batch = aws_sdk_batch::Client::new(config);
    use aws_sdk_batch::types::{
        CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, JobDefinitionType,
        JqState, ResourceRequirement, ResourceType,
    };
    let ce = batch
        .create_compute_environment()
        .compute_environment_name("image-labeler")
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(role)
        .send()
        .await
        .expect("create compute environment")
        .compute_environment_arn
        .expect("compute environment arn");
    batch
        .create_job_queue()
        .job_queue_name(&stack.job_queue)
        .state(JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(ce)
                .build(),
        )
        .send()
        .await
        .expect("create job queue");
    let requirement = |kind, value: &str| {
        ResourceRequirement::builder()
            .r#type(kind)
            .value(value)
            .build()
    };
    batch
        .register_job_definition()
        .job_definition_name(&stack.job_definition)
        .r#type(JobDefinitionType::Container)
        .container_properties(
            ContainerProperties::builder()
                .image("image-labeler-worker:local")
                .command("--job")
                .command("Ref::job")
                .resource_requirements(requirement(ResourceType::Vcpu, "1"))
                .resource_requirements(requirement(ResourceType::Memory, "512"))
                .build(),
        )
        .send()
        .await
        .expect("register job definition");
    Stack {
        events_queue_url: queue_url,
        ..stack
    }
}

/// An S3 client for moto (path-style addressing).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// Receives every message currently on the queue (deleting them) and wraps
/// them in the SQS event shape Lambda delivers.
pub async fn drain_as_lambda_event(config: &SdkConfig, queue_url: &str) -> serde_json::Value {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut records = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive messages");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            if let Some(handle) = &m.receipt_handle {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
            records.push(serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:123456789012:image-events"),
                "awsRegion": REGION,
            }));
        }
    }
    serde_json::json!({ "Records": records })
}
