output "region" {
  description = "Region of the stack."
  value       = local.region
}

output "bucket_name" {
  description = "Images bucket: upload .jpg/.jpeg/.png objects here."
  value       = aws_s3_bucket.images.id
}

output "bucket_arn" {
  description = "ARN of the images bucket."
  value       = aws_s3_bucket.images.arn
}

output "table_name" {
  description = "DynamoDB results table."
  value       = aws_dynamodb_table.results.name
}

output "table_arn" {
  description = "ARN of the DynamoDB results table."
  value       = aws_dynamodb_table.results.arn
}

output "job_queue_name" {
  description = "Batch job queue name."
  value       = aws_batch_job_queue.this.name
}

output "job_queue_arn" {
  description = "Batch job queue ARN (what Batch reports in job state change events)."
  value       = aws_batch_job_queue.this.arn
}

output "job_definition_name" {
  description = "Batch job definition name; SubmitJob by name uses the latest active revision."
  value       = local.job_definition_name
}

output "job_definition_arn" {
  description = "ARN of the current job definition revision (null until worker_image_tag is set)."
  value       = one(aws_batch_job_definition.worker[*].arn)
}

output "function_name" {
  description = "Name of the dispatcher Lambda function, deployed by `cargo lambda deploy`."
  value       = local.function_name
}

output "dispatcher_role_arn" {
  description = "Execution role to pass to `cargo lambda deploy --iam-role`."
  value       = aws_iam_role.dispatcher.arn
}

output "dispatcher_log_group" {
  description = "CloudWatch log group of the dispatcher."
  value       = aws_cloudwatch_log_group.dispatcher.name
}

output "worker_log_group" {
  description = "CloudWatch log group of the worker containers."
  value       = aws_cloudwatch_log_group.worker.name
}

output "ecr_repository_url" {
  description = "ECR repository of the worker image (push <url>:<tag>, then apply with worker_image_tag)."
  value       = aws_ecr_repository.worker.repository_url
}

output "events_queue_url" {
  description = "Queued mode: URL of the S3 events queue (null in direct mode)."
  value       = one(aws_sqs_queue.events[*].url)
}

output "events_queue_arn" {
  description = "Queued mode: ARN of the S3 events queue (null in direct mode)."
  value       = one(aws_sqs_queue.events[*].arn)
}

output "dead_letter_queue_url" {
  description = "Events the dispatcher could not handle after its retries."
  value       = aws_sqs_queue.dlq.url
}

output "dispatcher_timeout_seconds" {
  description = "The dispatcher timeout Terraform sized the events queue for (must equal dispatcher/Cargo.toml's [package.metadata.lambda.deploy].timeout)."
  value       = var.dispatcher_timeout_seconds
}

output "dispatcher_env" {
  description = "Environment of the dispatcher function, for `cargo lambda deploy --env-file` (see dispatcher/src/config.rs)."
  value       = local.dispatcher_env
}

output "viewer_policy_arn" {
  description = "Managed policy for people who inspect results (labeler get, find, status, export, serve): read-only"
  value       = aws_iam_policy.viewer.arn
}

output "rekognition_tps" {
  description = "DetectLabels calls per second the worker fleet shares (LABELER_FLEET_RATE): rekognition_tps, or the region's default quota."
  value       = local.rekognition_tps
}

output "worker_fleet_size" {
  description = "Most worker jobs that can run at once (LABELER_FLEET_SIZE): max_vcpus / worker_vcpu for each compute environment of the job queue."
  value       = local.worker_fleet_size
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the pipeline."
  value       = aws_cloudwatch_dashboard.pipeline.dashboard_name
}

output "dashboard_url" {
  description = "The dashboard in the CloudWatch console."
  value       = local.dashboard_url
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify: alarm_topic_arn, the topic created for alarm_email, or null when alarms notify no one."
  value       = length(local.alarm_actions) > 0 ? local.alarm_topic_arn : null
}
