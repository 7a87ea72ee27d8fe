//! The whole local pipeline on loopback: moto (S3, SQS, DynamoDB, Batch,
//! Rekognition, IAM, Lambda), the dispatcher deployed with `cargo lambda
//! deploy` and served by `cargo lambda watch`, the SQS → dispatcher event
//! source, and the local Batch executor running the worker binary.

use crate::container::Worker;
use crate::executor::{Executor, DEFAULT_PARALLEL};
use crate::lambda::{self, Invoker, Watch};
use crate::moto::{free_port, repo_root, Moto, ACCOUNT, REGION};
use crate::provision::{provision, Names, Provisioned};
use crate::pump;
use anyhow::Context;
use aws_config::SdkConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::info;
use worker::backend::Kind;

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory for logs and `stack.env`.
    pub state_dir: PathBuf,
    /// moto's port (0 picks a free one).
    pub moto_port: u16,
    /// The Runtime API emulator's port (0 picks a free one).
    pub lambda_port: u16,
    /// The worker binary or image the executor runs.
    pub worker: Worker,
    /// Containers run at once.
    pub parallel: usize,
    /// Whether to exercise `cargo lambda deploy` into moto first.
    pub deploy: bool,
    /// `IMAGES_PER_JOB` for the dispatcher.
    pub images_per_job: usize,
    /// Messages per dispatcher invocation.
    pub batch_size: usize,
    /// Whether S3 notifications are delivered to the dispatcher
    /// automatically (off lets a caller deliver them by hand).
    pub deliver_events: bool,
    /// An AWS-compatible endpoint already running on loopback (moto,
    /// LocalStack, or a fault-injecting proxy in front of one) to use
    /// instead of starting moto.
    pub aws_endpoint: Option<String>,
    /// Who labels: the job definition's `LABELER_BACKEND`. `local` by
    /// default, so that the labels say what is in the pictures (moto's
    /// DetectLabels answers the same fixed labels for every image).
    pub backend: Kind,
    /// The local model the worker binary loads (`make model`); the worker
    /// image carries its own.
    pub model: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        let root = repo_root();
        Self {
            state_dir: root.join(".local"),
            moto_port: 0,
            lambda_port: 0,
            worker: Worker::Binary(root.join("target/debug/worker")),
            parallel: DEFAULT_PARALLEL,
            deploy: true,
            images_per_job: 25,
            batch_size: 100,
            deliver_events: true,
            backend: Kind::Local,
            model: root.join(MODEL),
            aws_endpoint: None,
        }
    }
}

/// A running stack; [`Stack::down`] stops it and every process it started.
pub struct Stack {
    /// The resources.
    pub provisioned: Provisioned,
    /// SDK configuration pointing at moto.
    pub sdk: SdkConfig,
    /// Invokes the dispatcher.
    pub invoker: Invoker,
    /// Where the stack's logs are: `dispatcher.log` (the function's output
    /// under `cargo lambda watch`), `worker.log` (every worker container's
    /// output), `moto.log`.
    pub state_dir: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    watch: Option<Watch>,
    moto: Moto,
    deployed: bool,
}

/// How often the local stack asks the dispatcher for a reconciler pass, as
/// the EventBridge schedule does on AWS.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// The local threshold for "QUEUED too long". moto reports every Batch job
/// SUCCEEDED the moment it is submitted, whatever the local executor is
/// doing with it, so the threshold stays well above the time the executor
/// takes to run a job.
pub const LOCAL_RECONCILE_AFTER: Duration = Duration::from_secs(600);

/// Invokes the dispatcher with `{"reconcile": {}}` every `every` until `stop`.
async fn reconcile_every(
    every: Duration,
    invoker: Invoker,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
        match invoker.invoke(serde_json::json!({ "reconcile": {} })).await {
            Ok(report) => info!(report = %report, "reconciler pass"),
            Err(e) => tracing::warn!(error = %e, "reconciler pass failed"),
        }
    }
}

/// Where `make model` writes the local backend's model.
pub const MODEL: &str = "target/model/efficientnet-lite0.onnx";

/// `LABELER_MODEL` for a worker binary whose backend needs the model;
/// fails naming `make model` when it is missing.
fn model_env(opts: &Options) -> anyhow::Result<Option<(String, String)>> {
    if opts.backend == Kind::Rekognition || !matches!(opts.worker, Worker::Binary(_)) {
        return Ok(None);
    }
    anyhow::ensure!(
        opts.model.exists(),
        "{} is missing: run `make model` (the {} backend needs it)",
        opts.model.display(),
        opts.backend.as_str()
    );
    Ok(Some((
        "LABELER_MODEL".to_owned(),
        opts.model.display().to_string(),
    )))
}

impl Stack {
    /// Starts everything and returns once the dispatcher answers.
    pub async fn up(opts: &Options) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&opts.state_dir)?;
        opts.worker.check()?;
        let model_env = model_env(opts)?;
        let moto = match &opts.aws_endpoint {
            Some(url) => Moto::attach(url)?,
            None => Moto::start(opts.moto_port, &opts.state_dir.join("moto.log"))?,
        };
        info!(endpoint = %moto.endpoint, "moto is up");
        let sdk = moto.sdk_config().await;
        let provisioned = provision(&sdk, &Names::default(), opts.backend).await?;
        let names = &provisioned.names;
        let mut env: Vec<(String, String)> = moto
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let function_env = vec![
            ("JOB_QUEUE".to_owned(), names.job_queue.clone()),
            ("JOB_DEFINITION".to_owned(), names.job_definition.clone()),
            ("TABLE_NAME".to_owned(), names.table.clone()),
            ("IMAGES_PER_JOB".to_owned(), opts.images_per_job.to_string()),
            (
                "MIN_CONFIDENCE".to_owned(),
                opts.backend.default_min_confidence().to_string(),
            ),
            (
                "RECONCILE_AFTER_SECONDS".to_owned(),
                LOCAL_RECONCILE_AFTER.as_secs().to_string(),
            ),
        ];
        if opts.deploy {
            lambda::deploy(
                &moto.endpoint,
                &provisioned.dispatcher_role_arn,
                &function_env,
                &opts.state_dir.join("deploy.log"),
            )?;
            info!("dispatcher deployed into moto with cargo lambda deploy");
        }
        let mut worker_env = env.clone();
        worker_env.extend(model_env);
        env.extend(function_env);
        let port = if opts.lambda_port == 0 {
            free_port()?
        } else {
            opts.lambda_port
        };
        let watch_log = opts.state_dir.join("dispatcher.log");
        let watch = tokio::task::spawn_blocking(move || Watch::start(port, &env, &watch_log))
            .await?
            .context("start the dispatcher under cargo lambda watch")?;
        info!(port, "dispatcher is answering under cargo lambda watch");
        let invoker = watch.invoker();

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.events_queue);
        let mut tasks = Vec::new();
        if opts.deliver_events {
            tasks.push(tokio::spawn(pump::run(
                sqs,
                provisioned.events_queue_url.clone(),
                queue_arn,
                invoker,
                opts.batch_size,
                stopped.clone(),
            )));
        }
        let executor = Executor {
            batch: aws_sdk_batch::Client::new(&sdk),
            job_queue: names.job_queue.clone(),
            worker: opts.worker.clone(),
            base_env: worker_env,
            parallel: opts.parallel,
            notify: Arc::new(move |event| Box::pin(invoker.invoke(event))),
            log: opts.state_dir.join("worker.log"),
        };
        tasks.push(tokio::spawn(executor.run(stopped.clone())));
        tasks.push(tokio::spawn(reconcile_every(
            RECONCILE_EVERY,
            invoker,
            stopped,
        )));
        let stack = Stack {
            provisioned,
            sdk,
            invoker,
            state_dir: opts.state_dir.clone(),
            stop,
            tasks,
            watch: Some(watch),
            moto,
            deployed: opts.deploy,
        };
        std::fs::write(opts.state_dir.join("stack.env"), stack.exports())?;
        Ok(stack)
    }

    /// Shell exports for the stock AWS CLI and SDKs.
    pub fn exports(&self) -> String {
        let n = &self.provisioned.names;
        format!(
            "export PATH=\"{venv}:$PATH\"\n\
             export AWS_ENDPOINT_URL={endpoint}\n\
             export AWS_REGION={REGION}\n\
             export AWS_DEFAULT_REGION={REGION}\n\
             export AWS_ACCESS_KEY_ID=testing\n\
             export AWS_SECRET_ACCESS_KEY=testing\n\
             export BUCKET={}\n\
             export TABLE={}\n\
             export JOB_QUEUE={}\n\
             export EVENTS_QUEUE_URL={}\n\
             export LABELER_TABLE={}\n\
             export LABELER_JOB_QUEUE={}\n\
             export LABELER_JOB_DEFINITION={}\n{function}",
            n.bucket,
            n.table,
            n.job_queue,
            self.provisioned.events_queue_url,
            n.table,
            n.job_queue,
            n.job_definition,
            endpoint = self.moto.endpoint,
            venv = repo_root().join(".venv/bin").display(),
            function = if self.deployed {
                format!("export LABELER_FUNCTION={}\n", crate::lambda::FUNCTION)
            } else {
                String::new()
            },
        )
    }

    /// The environment of [`Stack::exports`], for child processes.
    pub fn env(&self) -> Vec<(String, String)> {
        self.exports()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| *k != "PATH")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Stops the event source and the executor, then the dispatcher and moto.
    pub async fn down(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(watch) = self.watch.take() {
            let _ = tokio::task::spawn_blocking(move || drop(watch)).await;
        }
        info!("local stack stopped");
    }
}
