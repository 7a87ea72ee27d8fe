//! A local AWS Batch compute environment.
//!
//! moto accepts and tracks Batch jobs but cannot run containers, so this
//! executor plays the compute environment: it picks up every job submitted to
//! the queue, reads the **registered** job definition back from moto, builds
//! the container's argv by substituting `Ref::` parameters exactly as Batch
//! does, and runs the locally built `worker` binary with the definition's
//! environment plus Batch's own variables (`AWS_BATCH_JOB_ID`,
//! `AWS_BATCH_JOB_ATTEMPT`, `AWS_BATCH_JOB_ARRAY_INDEX`). Failed attempts are
//! retried by the definition's `retryStrategy` (`evaluateOnExit` rules, first
//! match wins, no match retries) and cut at `timeout.attemptDurationSeconds`.
//! When a job or array child finally fails, the executor sends the same
//! "Batch Job State Change" event EventBridge would send to the dispatcher.

use crate::container::Worker;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{info, warn};
use worker::batch::{resolve_command, EvaluateOnExit, RetryAction, RetryStrategy};

/// Containers the local executor runs at once unless told otherwise: the
/// local stack's Batch capacity, and so the fleet size its job definition
/// gives the workers (`LABELER_FLEET_SIZE`).
pub const DEFAULT_PARALLEL: usize = 2;

/// What one attempt of one container ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// Container-level reason (e.g. killed by a signal).
    pub reason: String,
    /// Job-level status reason.
    pub status_reason: String,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Sends an event to the dispatcher (the stack's Runtime API client).
pub type Notify = Arc<dyn Fn(Value) -> BoxFuture<'static, anyhow::Result<Value>> + Send + Sync>;

/// The executor's settings.
#[derive(Clone)]
pub struct Executor {
    /// moto's Batch.
    pub batch: aws_sdk_batch::Client,
    /// Queue to take jobs from.
    pub job_queue: String,
    /// The worker binary or image each attempt runs.
    pub worker: Worker,
    /// Environment every container gets (AWS endpoint and credentials).
    pub base_env: Vec<(String, String)>,
    /// Containers running at once ([`DEFAULT_PARALLEL`] in the local stack
    /// unless told otherwise).
    pub parallel: usize,
    /// Where FAILED job-state events go.
    pub notify: Notify,
    /// File the containers' output is appended to (like CloudWatch Logs).
    pub log: PathBuf,
}

/// A job's definition as the executor needs it.
#[derive(Debug, Clone)]
struct Definition {
    command: Vec<String>,
    environment: Vec<(String, String)>,
    parameters: HashMap<String, String>,
    retry: RetryStrategy,
    timeout: Option<Duration>,
}

impl Executor {
    /// Polls the queue until `stop` resolves; runs every new job.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.parallel.max(1)));
        let mut seen = HashSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            match self.new_jobs(&mut seen).await {
                Ok(jobs) => {
                    for job in jobs {
                        let this = self.clone();
                        let slots = slots.clone();
                        tasks.spawn(async move { this.run_job(job, slots).await });
                    }
                }
                Err(e) => warn!(error = %e, "listing Batch jobs failed"),
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        tasks.shutdown().await;
    }

    async fn new_jobs(&self, seen: &mut HashSet<String>) -> anyhow::Result<Vec<String>> {
        let ids = job_ids(&self.batch, &self.job_queue).await?;
        Ok(ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect())
    }

    async fn run_job(&self, job_id: String, slots: Arc<Semaphore>) {
        if let Err(e) = self.try_run_job(&job_id, slots).await {
            warn!(job_id, error = %format!("{e:#}"), "could not run job");
        }
    }

    async fn try_run_job(&self, job_id: &str, slots: Arc<Semaphore>) -> anyhow::Result<()> {
        let job = self
            .batch
            .describe_jobs()
            .jobs(job_id)
            .send()
            .await?
            .jobs
            .unwrap_or_default()
            .pop()
            .ok_or_else(|| anyhow::anyhow!("job {job_id} not found"))?;
        let def = self.definition(&job).await?;
        let size = job.array_properties().and_then(|a| a.size()).unwrap_or(0);
        let indices: Vec<Option<usize>> = if size > 1 {
            (0..size as usize).map(Some).collect()
        } else {
            vec![None]
        };
        info!(
            job_id,
            job_name = job.job_name(),
            children = indices.len(),
            "running job"
        );
        let mut children = tokio::task::JoinSet::new();
        for index in indices {
            let (this, def, slots, job) = (self.clone(), def.clone(), slots.clone(), job.clone());
            children.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("semaphore open");
                let outcome = this.run_container(&job, &def, index).await;
                (index, outcome)
            });
        }
        let mut any_failed = None;
        while let Some(joined) = children.join_next().await {
            let (index, last) = joined?;
            if !last.succeeded() {
                warn!(job_id, index, exit_code = last.exit_code, reason = %last.reason, "container failed");
                if index.is_some() {
                    self.notify_failed(&job, index, &last).await;
                }
                any_failed.get_or_insert(last);
            }
        }
        if let Some(last) = any_failed {
            self.notify_failed(&job, None, &last).await;
        } else {
            info!(job_id, "job succeeded");
        }
        Ok(())
    }

    async fn definition(
        &self,
        job: &aws_sdk_batch::types::JobDetail,
    ) -> anyhow::Result<Definition> {
        let arn = job.job_definition().unwrap_or_default();
        let registered = self
            .batch
            .describe_job_definitions()
            .job_definitions(arn)
            .send()
            .await?
            .job_definitions
            .unwrap_or_default()
            .pop()
            .ok_or_else(|| anyhow::anyhow!("job definition {arn} not found"))?;
        let container = registered.container_properties();
        let mut parameters = registered.parameters().cloned().unwrap_or_default();
        parameters.extend(job.parameters().cloned().unwrap_or_default());
        let retry = registered.retry_strategy();
        Ok(Definition {
            command: container.map(|c| c.command().to_vec()).unwrap_or_default(),
            environment: container
                .map(|c| {
                    c.environment()
                        .iter()
                        .map(|e| {
                            (
                                e.name().unwrap_or_default().to_owned(),
                                e.value().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            parameters,
            retry: RetryStrategy {
                attempts: retry.and_then(|r| r.attempts()).unwrap_or(1).max(1) as u32,
                evaluate_on_exit: retry
                    .map(|r| {
                        r.evaluate_on_exit()
                            .iter()
                            .map(|e| EvaluateOnExit {
                                action: e
                                    .action()
                                    .map(|a| a.as_str().to_owned())
                                    .unwrap_or_default(),
                                on_exit_code: e.on_exit_code().map(str::to_owned),
                                on_reason: e.on_reason().map(str::to_owned),
                                on_status_reason: e.on_status_reason().map(str::to_owned),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            timeout: registered
                .timeout()
                .and_then(|t| t.attempt_duration_seconds())
                .map(|s| Duration::from_secs(s as u64)),
        })
    }

    async fn run_container(
        &self,
        job: &aws_sdk_batch::types::JobDetail,
        def: &Definition,
        index: Option<usize>,
    ) -> Attempt {
        let job_id = job.job_id().unwrap_or_default();
        let argv = resolve_command(&def.command, &def.parameters);
        let mut attempt = 1;
        loop {
            let result = self.attempt(job_id, def, &argv, index, attempt).await;
            let retry = def.retry.action(
                result.exit_code,
                Some(&result.reason),
                Some(&result.status_reason),
            );
            if result.succeeded() || attempt >= def.retry.attempts || retry == RetryAction::Exit {
                return result;
            }
            info!(
                job_id,
                index,
                attempt,
                exit_code = result.exit_code,
                "retrying per retryStrategy"
            );
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        job_id: &str,
        def: &Definition,
        argv: &[String],
        index: Option<usize>,
        attempt: u32,
    ) -> Attempt {
        let mut env = self.base_env.clone();
        env.extend(def.environment.iter().cloned());
        env.push((
            "AWS_BATCH_JOB_ID".into(),
            match index {
                Some(i) => format!("{job_id}:{i}"),
                None => job_id.to_owned(),
            },
        ));
        env.push(("AWS_BATCH_JOB_ATTEMPT".into(), attempt.to_string()));
        env.push(("AWS_BATCH_JQ_NAME".into(), self.job_queue.clone()));
        if let Some(i) = index {
            env.push(("AWS_BATCH_JOB_ARRAY_INDEX".into(), i.to_string()));
        }
        let mut cmd = self.worker.command(argv, &env);
        cmd.kill_on_drop(true);
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            Ok(file) => {
                let err = file.try_clone().map(std::process::Stdio::from);
                cmd.stdout(file);
                if let Ok(err) = err {
                    cmd.stderr(err);
                }
            }
            Err(e) => warn!(log = %self.log.display(), error = %e, "container output not captured"),
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Attempt {
                    exit_code: None,
                    reason: format!("CannotStartContainerError: {e}"),
                    status_reason: "Task failed to start".into(),
                }
            }
        };
        let limit = def.timeout.unwrap_or(Duration::from_secs(24 * 3600));
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => exit_attempt(status),
            Ok(Err(e)) => Attempt {
                exit_code: None,
                reason: format!("waiting for the container failed: {e}"),
                status_reason: "Essential container in task exited".into(),
            },
            Err(_) => {
                if let Some(pid) = child.id() {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-s", "TERM", &pid.to_string()])
                        .status()
                        .await;
                }
                let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await
                {
                    Ok(Ok(s)) => Some(s),
                    _ => {
                        let _ = child.kill().await;
                        None
                    }
                };
                Attempt {
                    exit_code: status.and_then(|s| s.code()),
                    reason: "Job attempt duration exceeded timeout".into(),
                    status_reason: "Job attempt duration exceeded timeout".into(),
                }
            }
        }
    }

    async fn notify_failed(
        &self,
        job: &aws_sdk_batch::types::JobDetail,
        index: Option<usize>,
        last: &Attempt,
    ) {
        let event = job_state_change_event(job, index, last);
        match (self.notify)(event).await {
            Ok(answer) => {
                info!(job_id = job.job_id(), index, answer = %answer, "job-state event delivered")
            }
            Err(e) => {
                warn!(job_id = job.job_id(), index, error = %e, "job-state event not delivered")
            }
        }
    }
}

/// Ids of every job submitted to `queue`, array children left out (their
/// ids are `parent:index`).
pub async fn job_ids(batch: &aws_sdk_batch::Client, queue: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let page = batch
            .list_jobs()
            .job_queue(queue)
            .filters(
                aws_sdk_batch::types::KeyValuesPair::builder()
                    .name("JOB_NAME")
                    .values("*")
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await?;
        ids.extend(
            page.job_summary_list()
                .iter()
                .filter_map(|j| j.job_id())
                .filter(|id| !id.contains(':'))
                .map(str::to_owned),
        );
        token = page.next_token;
        if token.is_none() {
            return Ok(ids);
        }
    }
}

fn exit_attempt(status: std::process::ExitStatus) -> Attempt {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Attempt {
            exit_code: Some(code),
            reason: String::new(),
            status_reason: "Essential container in task exited".into(),
        },
        (None, Some(signal)) => Attempt {
            exit_code: Some(128 + signal),
            reason: format!("container killed by signal {signal}"),
            status_reason: "Essential container in task exited".into(),
        },
        _ => Attempt {
            exit_code: None,
            reason: "container ended without a status".into(),
            status_reason: "Essential container in task exited".into(),
        },
    }
}

/// The "Batch Job State Change" event EventBridge delivers for a FAILED job
/// (or array child, when `index` is set).
pub fn job_state_change_event(
    job: &aws_sdk_batch::types::JobDetail,
    index: Option<usize>,
    last: &Attempt,
) -> Value {
    let job_id = job.job_id().unwrap_or_default();
    let mut detail = json!({
        "jobArn": job.job_arn(),
        "jobName": job.job_name(),
        "jobId": match index { Some(i) => format!("{job_id}:{i}"), None => job_id.to_owned() },
        "jobQueue": job.job_queue(),
        "status": "FAILED",
        "statusReason": last.status_reason,
        "jobDefinition": job.job_definition(),
        "parameters": job.parameters(),
        "container": {"exitCode": last.exit_code, "reason": last.reason},
    });
    match index {
        Some(i) => detail["arrayProperties"] = json!({ "index": i }),
        None => {
            if let Some(size) = job.array_properties().and_then(|a| a.size()) {
                detail["arrayProperties"] = json!({ "size": size });
            }
        }
    }
    json!({
        "version": "0",
        "id": format!("local-{job_id}-{}", index.map_or("parent".to_owned(), |i| i.to_string())),
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": crate::moto::ACCOUNT,
        "time": labeler_core::schema::rfc3339_millis(labeler_core::store::Clock::now().unix_millis),
        "region": crate::moto::REGION,
        "resources": [job.job_arn()],
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_batch::types::{ArrayPropertiesDetail, JobDetail, JobStatus};

    fn job() -> JobDetail {
        JobDetail::builder()
            .job_arn("arn:aws:batch:us-east-1:123456789012:job/j-1")
            .job_name("label-a_jpg-1-0123456789abcdef")
            .job_id("j-1")
            .job_queue("arn:aws:batch:us-east-1:123456789012:job-queue/image-labeler")
            .status(JobStatus::Failed)
            .job_definition(
                "arn:aws:batch:us-east-1:123456789012:job-definition/image-labeler-worker:1",
            )
            .parameters("job", "{}")
            .array_properties(ArrayPropertiesDetail::builder().size(3).build())
            .started_at(0)
            .build()
    }

    #[test]
    fn child_failures_become_the_event_batch_sends_for_an_array_child() {
        let last = Attempt {
            exit_code: Some(137),
            reason: "container killed by signal 9".into(),
            status_reason: "Essential container in task exited".into(),
        };
        let event = job_state_change_event(&job(), Some(2), &last);
        assert_eq!(event["source"], "aws.batch");
        assert_eq!(event["detail-type"], "Batch Job State Change");
        assert_eq!(event["detail"]["jobId"], "j-1:2");
        assert_eq!(event["detail"]["arrayProperties"]["index"], 2);
        assert_eq!(event["detail"]["container"]["exitCode"], 137);
        assert_eq!(event["detail"]["parameters"]["job"], "{}");
        let parent = job_state_change_event(&job(), None, &last);
        assert_eq!(parent["detail"]["jobId"], "j-1");
        assert_eq!(parent["detail"]["arrayProperties"]["size"], 3);
    }

    #[test]
    fn a_signal_is_reported_like_docker_does() {
        use std::os::unix::process::ExitStatusExt;
        let killed = exit_attempt(std::process::ExitStatus::from_raw(9));
        assert_eq!(killed.exit_code, Some(137));
        assert!(killed.reason.contains("signal 9"));
        let exited = exit_attempt(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(exited.exit_code, Some(3));
    }
}
