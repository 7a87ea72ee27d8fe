################################################################################
# Monitoring: one CloudWatch dashboard, four alarms, optional notifications.
#
# The dispatcher and the worker write their metrics as CloudWatch embedded
# metric format lines into their log groups; CloudWatch Logs extracts them
# (nothing to install, no PutMetricData permission). Namespace ImageLabeler; every
# metric has the dimension Table (the results table), and ImagesFailed is
# also published per Table and ReasonClass.
#
#   dispatcher, per invocation: ImagesQueued ImagesSkipped Duplicates
#     ImagesRemoved JobsSubmitted ArrayChildrenSubmitted SubmitJobThrottles
#     SubmitJobRetries DeliveriesFailed ImagesFailedByBatch
#     ImagesFailedToSubmit (Count), InvocationDuration (Milliseconds)
#   dispatcher, per reconciler pass: OldestQueuedAgeSeconds (Seconds; 0 when
#     nothing QUEUED is older than the reconcile threshold),
#     ReconcileRedispatched ReconcileFailed (Count)
#   worker, every 60 s and at the end of a chunk: ImagesLabeled ImagesReused
#     ImagesFailed ImagesAlreadyDone ImagesSuperseded ImagesLeftQueued
#     DetectLabelsCalls DetectLabelsThrottles WriteConflicts (Count),
#     DetectLabelsLatency (Milliseconds), ChunkDuration (Seconds),
#     RateLimit (Count/Second: one process's current DetectLabels pace)
################################################################################

locals {
  metrics_namespace = "ImageLabeler"
  metrics_table     = aws_dynamodb_table.results.name

  failure_reason_classes = ["not_an_image", "too_large", "unreadable", "rekognition_refused", "access_denied", "other"]

  # How often the reconciler reports OldestQueuedAgeSeconds: the rate() of
  # reconcile_schedule; a cron() schedule runs every hour (the variable's
  # validation), so an hour bounds its gaps.
  reconcile_rate             = regexall("^rate\\(([0-9]+) (minute|hour|day)s?\\)$", var.reconcile_schedule)
  reconcile_interval_seconds = length(local.reconcile_rate) > 0 ? tonumber(local.reconcile_rate[0][0]) * { minute = 60, hour = 3600, day = 86400 }[local.reconcile_rate[0][1]] : 3600
  # A missing datapoint counts as breaching, so the alarm fires only when
  # every evaluated period is empty or old: the periods must span two passes,
  # or one late pass would page. Periods of at most a day; CloudWatch
  # evaluates at most 7 days of periods, 1 day when a period is under an
  # hour (PutMetricAlarm), which reconcile_schedule's validation enforces.
  backlog_alarm_period             = min(local.reconcile_interval_seconds, 86400)
  backlog_alarm_evaluation_periods = ceil(2 * local.reconcile_interval_seconds / local.backlog_alarm_period)
  backlog_alarm_window_limit       = local.backlog_alarm_period < 3600 ? 86400 : 604800

  alarm_topic_arn = var.alarm_topic_arn != null ? var.alarm_topic_arn : one(aws_sns_topic.alarms[*].arn)
  alarm_actions   = var.alarm_topic_arn != null || var.alarm_email != null ? [local.alarm_topic_arn] : []

  # Dashboards are global to the account, whichever region creates them.
  dashboard_name = "${local.global_name_prefix}-pipeline"
  console_host = {
    aws          = "${local.region}.console.aws.amazon.com"
    "aws-cn"     = "console.amazonaws.cn"
    "aws-us-gov" = "console.amazonaws-us-gov.com"
  }
  dashboard_url = "https://${lookup(local.console_host, local.partition, local.console_host.aws)}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${local.dashboard_name}"
}

################################################################################
# Notifications: a topic of our own for alarm_email, or the caller's
# alarm_topic_arn, or none.
################################################################################

resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:Alarm notifications hold alarm names, states and metric values, no image data or secrets. CloudWatch can publish to an encrypted topic only if the key's policy lets cloudwatch.amazonaws.com use it, which the AWS managed key aws/sns cannot be changed to do (notifications would be dropped), and a customer key would add a key and its policy for these messages alone.
  count = var.alarm_email != null ? 1 : 0

  name = "${var.name_prefix}-alarms"
}

data "aws_iam_policy_document" "alarms_topic" {
  count = var.alarm_email != null ? 1 : 0

  statement {
    sid       = "CloudWatchAlarmsOfThisStack"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms[0].arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name_prefix}-*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  count = var.alarm_email != null ? 1 : 0

  arn    = aws_sns_topic.alarms[0].arn
  policy = data.aws_iam_policy_document.alarms_topic[0].json
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email != null ? 1 : 0

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

################################################################################
# Alarms. Each description is what the person paged reads first.
################################################################################

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name = "${var.name_prefix}-dead-letters"
  # No message move task: what Lambda's on-failure destination and
  # EventBridge put here has no source queue to move back to. Reconciler
  # ticks and Batch failures need no replay, the next pass covers them.
  alarm_description = "Events the dispatcher could not handle after its retries wait in the dead-letter queue ${aws_sqs_queue.dlq.name}: S3 events, Batch job failures or reconciler ticks. Read them (aws sqs receive-message --queue-url ${aws_sqs_queue.dlq.url} --max-number-of-messages 10) and the log group ${aws_cloudwatch_log_group.dispatcher.name} around their time to find the cause. Once it is fixed: labeler backfill s3://${aws_s3_bucket.images.id}/<prefix> re-dispatches the images S3 events named; reconciler ticks and Batch job failures need no replay, as every scheduled pass re-checks QUEUED images and their jobs (labeler reconcile runs one now). Then purge the queue (aws sqs purge-queue --queue-url ${aws_sqs_queue.dlq.url}): the alarm clears when it is empty."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateNumberOfMessagesVisible"
  dimensions  = { QueueName = aws_sqs_queue.dlq.name }
  statistic   = "Maximum"
  period      = 300

  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  # SQS stops publishing metrics for a queue nothing has touched for hours,
  # messages or not: missing data keeps the state, so a dead-letter queue
  # still holding messages stays in ALARM until a datapoint shows it empty.
  treat_missing_data = "ignore"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "backlog_age" {
  alarm_name        = "${var.name_prefix}-backlog-age"
  alarm_description = "An image has been QUEUED for more than ${var.backlog_alarm_seconds} s, or the reconciler (${var.reconcile_schedule}) has stopped reporting: this alarm also fires when no reconciler pass reports for two periods. Check the log group ${aws_cloudwatch_log_group.dispatcher.name} for reconciler passes and errors, and that the rule ${var.name_prefix}-reconcile exists and is enabled (make deploy recreates it). If passes run, labeler status shows what is QUEUED; the Batch queue ${local.job_queue_name} may lack capacity (jobs RUNNABLE), or DetectLabels may be throttled (see the dashboard ${local.dashboard_name})."

  namespace          = local.metrics_namespace
  metric_name        = "OldestQueuedAgeSeconds"
  dimensions         = { Table = local.metrics_table }
  statistic          = "Maximum"
  period             = local.backlog_alarm_period
  evaluation_periods = local.backlog_alarm_evaluation_periods

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.backlog_alarm_seconds
  datapoints_to_alarm = local.backlog_alarm_evaluation_periods
  # Every reconciler pass reports the age, 0 when nothing is old, so a
  # period without a datapoint means no pass ran: the reconciler is what
  # makes every image converge, and it not running is as urgent as a stuck
  # image.
  treat_missing_data = "breaching"

  # Without the dispatcher no pass can run (before the first deploy, after a
  # half-finished one, during a destroy), and the alarm would page for that
  # alone; it notifies once the function exists.
  actions_enabled = local.function_exists
  alarm_actions   = local.alarm_actions
  ok_actions      = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "failed_rate" {
  alarm_name        = "${var.name_prefix}-failed-rate"
  alarm_description = "More than ${var.failed_rate_alarm_percent}% of the images that finished in the last 15 minutes ended FAILED (worker failures, images of failed Batch jobs, images that could not be submitted, images the reconciler recorded FAILED). The dashboard ${local.dashboard_name} splits them by reason class: not_an_image or too_large are the uploads themselves; access_denied and rekognition_refused point at roles, bucket policy or quotas; failures by Batch, at submission or by the reconciler point at the job queue ${local.job_queue_name} and the log group ${aws_cloudwatch_log_group.dispatcher.name}. labeler status lists the reasons; after a fix, labeler retry --failed labels them again."

  metric_query {
    id          = "rate"
    label       = "FAILED, % of finished images"
    expression  = "IF(failures + FILL(labeled, 0) > 0, 100 * failures / (failures + FILL(labeled, 0)), 0)"
    return_data = true
  }

  metric_query {
    id          = "failures"
    label       = "FAILED images"
    expression  = "FILL(failed, 0) + FILL(failed_by_batch, 0) + FILL(failed_to_submit, 0) + FILL(reconcile_failed, 0)"
    return_data = false
  }

  dynamic "metric_query" {
    for_each = {
      failed           = "ImagesFailed"
      failed_by_batch  = "ImagesFailedByBatch"
      failed_to_submit = "ImagesFailedToSubmit"
      # The reconciler's FAILED images (job failed unreported, or too many
      # dispatches) are in no other count.
      reconcile_failed = "ReconcileFailed"
      labeled          = "ImagesLabeled"
    }

    content {
      id          = metric_query.key
      return_data = false

      metric {
        namespace   = local.metrics_namespace
        metric_name = metric_query.value
        dimensions  = { Table = local.metrics_table }
        stat        = "Sum"
        period      = 900
      }
    }
  }

  comparison_operator = "GreaterThanThreshold"
  threshold           = var.failed_rate_alarm_percent
  evaluation_periods  = 1
  # No finished images, no rate: nothing is failing.
  treat_missing_data = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dispatcher_errors" {
  alarm_name        = "${var.name_prefix}-dispatcher-errors"
  alarm_description = "The dispatcher ${local.function_name} returned errors, crashed or timed out in each of the last three 5-minute periods. Lambda retries it (SQS redelivery, or two asynchronous retries) and then sends the event to the dead-letter queue ${aws_sqs_queue.dlq.name}. Read the errors in the log group ${aws_cloudwatch_log_group.dispatcher.name}; a timeout means raising the timeout in dispatcher/Cargo.toml and running make deploy. The reconciler re-dispatches images left QUEUED once the cause is fixed."

  namespace   = "AWS/Lambda"
  metric_name = "Errors"
  dimensions  = { FunctionName = local.function_name }
  statistic   = "Sum"
  period      = 300

  # Errors in three 5-minute periods in a row: one failed event and its
  # retries (two async retries within about 3 minutes, or SQS redeliveries
  # a visibility timeout apart) cannot fill them, and what exhausts its
  # retries reaches the dead-letter alarm anyway. A failing reconciler or
  # steady traffic that keeps failing does.
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  # Lambda publishes nothing for periods without invocations.
  treat_missing_data = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
}

################################################################################
# Dashboard
#
# Batch jobs by state: AWS Batch documents its own job-state metrics
# (AWS/Batch, per JobQueueName) as best effort, with transitions that can be
# missed, so this dashboard does not rely on them. It shows what the
# dispatcher submitted (jobs, array children, SubmitJob throttles and
# retries) and, among the failures, the images of jobs that FAILED
# (ImagesFailedByBatch); the Batch console shows the queue's jobs by state.
################################################################################

locals {
  metric_widget_defaults = {
    region = local.region
    view   = "timeSeries"
  }

  dashboard_widgets = [
    {
      title   = "Throughput (images per minute)"
      stat    = "Sum"
      period  = 60
      stacked = false
      metrics = [
        [local.metrics_namespace, "ImagesLabeled", "Table", local.metrics_table, { label = "labeled" }],
        [local.metrics_namespace, "ImagesReused", "Table", local.metrics_table, { label = "reused labels" }],
        [local.metrics_namespace, "ImagesQueued", "Table", local.metrics_table, { label = "queued" }],
      ]
    },
    {
      title   = "Backlog: oldest QUEUED image (seconds)"
      stat    = "Maximum"
      period  = local.backlog_alarm_period
      stacked = false
      metrics = [
        [local.metrics_namespace, "OldestQueuedAgeSeconds", "Table", local.metrics_table, { label = "oldest QUEUED" }],
      ]
      annotations = { horizontal = [{ label = "alarm", value = var.backlog_alarm_seconds }] }
    },
    {
      title   = "FAILED images by reason class"
      stat    = "Sum"
      period  = 300
      stacked = true
      metrics = concat(
        [for reason in local.failure_reason_classes : [local.metrics_namespace, "ImagesFailed", "Table", local.metrics_table, "ReasonClass", reason, { label = reason }]],
        [
          [local.metrics_namespace, "ImagesFailedByBatch", "Table", local.metrics_table, { label = "job failed in Batch" }],
          [local.metrics_namespace, "ImagesFailedToSubmit", "Table", local.metrics_table, { label = "could not be submitted" }],
        ],
      )
    },
    {
      title   = "DetectLabels calls and throttles (per minute)"
      stat    = "Sum"
      period  = 60
      stacked = false
      metrics = [
        [local.metrics_namespace, "DetectLabelsCalls", "Table", local.metrics_table, { label = "calls" }],
        [local.metrics_namespace, "DetectLabelsThrottles", "Table", local.metrics_table, { label = "throttled" }],
      ]
      annotations = { horizontal = [{ label = "quota (rekognition_tps x 60)", value = local.rekognition_tps * 60 }] }
    },
    {
      title   = "DetectLabels latency (ms)"
      stat    = "p50"
      period  = 60
      stacked = false
      metrics = [
        [local.metrics_namespace, "DetectLabelsLatency", "Table", local.metrics_table, { label = "p50", stat = "p50" }],
        [local.metrics_namespace, "DetectLabelsLatency", "Table", local.metrics_table, { label = "p90", stat = "p90" }],
        [local.metrics_namespace, "DetectLabelsLatency", "Table", local.metrics_table, { label = "p99", stat = "p99" }],
      ]
    },
    {
      title   = "DetectLabels pace of one worker (calls per second)"
      stat    = "Average"
      period  = 60
      stacked = false
      metrics = [
        [local.metrics_namespace, "RateLimit", "Table", local.metrics_table, { label = "average", stat = "Average" }],
        [local.metrics_namespace, "RateLimit", "Table", local.metrics_table, { label = "lowest", stat = "Minimum" }],
        [local.metrics_namespace, "RateLimit", "Table", local.metrics_table, { label = "highest", stat = "Maximum" }],
      ]
      annotations = { horizontal = [{ label = "fair share (fleet rate / fleet size)", value = local.rekognition_tps / local.worker_fleet_size }] }
    },
    {
      title   = "Batch jobs submitted (per 5 minutes)"
      stat    = "Sum"
      period  = 300
      stacked = false
      metrics = [
        [local.metrics_namespace, "JobsSubmitted", "Table", local.metrics_table, { label = "jobs" }],
        [local.metrics_namespace, "ArrayChildrenSubmitted", "Table", local.metrics_table, { label = "array children" }],
        [local.metrics_namespace, "SubmitJobThrottles", "Table", local.metrics_table, { label = "SubmitJob throttled" }],
        [local.metrics_namespace, "SubmitJobRetries", "Table", local.metrics_table, { label = "SubmitJob retried" }],
      ]
    },
    {
      title   = "Dead-letter queue: events waiting"
      stat    = "Maximum"
      period  = 300
      stacked = false
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { label = aws_sqs_queue.dlq.name }],
      ]
    },
    {
      title   = "Dispatcher Lambda: errors and throttles"
      stat    = "Sum"
      period  = 300
      stacked = false
      metrics = [
        ["AWS/Lambda", "Errors", "FunctionName", local.function_name, { label = "errors" }],
        ["AWS/Lambda", "Throttles", "FunctionName", local.function_name, { label = "throttles" }],
      ]
    },
    {
      title   = "Dispatcher duration (ms)"
      stat    = "Maximum"
      period  = 300
      stacked = false
      metrics = [
        ["AWS/Lambda", "Duration", "FunctionName", local.function_name, { label = "Lambda duration, max" }],
        ["AWS/Lambda", "Duration", "FunctionName", local.function_name, { label = "Lambda duration, average", stat = "Average" }],
        [local.metrics_namespace, "InvocationDuration", "Table", local.metrics_table, { label = "handler, max" }],
      ]
      annotations = { horizontal = [{ label = "timeout", value = var.dispatcher_timeout_seconds * 1000 }] }
    },
    {
      title   = "Other outcomes (per 5 minutes)"
      stat    = "Sum"
      period  = 300
      stacked = false
      metrics = [
        [local.metrics_namespace, "ImagesSkipped", "Table", local.metrics_table, { label = "skipped" }],
        [local.metrics_namespace, "Duplicates", "Table", local.metrics_table, { label = "duplicate events" }],
        [local.metrics_namespace, "ImagesRemoved", "Table", local.metrics_table, { label = "removed" }],
        [local.metrics_namespace, "DeliveriesFailed", "Table", local.metrics_table, { label = "deliveries failed" }],
        [local.metrics_namespace, "ImagesAlreadyDone", "Table", local.metrics_table, { label = "already done" }],
        [local.metrics_namespace, "ImagesSuperseded", "Table", local.metrics_table, { label = "superseded" }],
        [local.metrics_namespace, "ImagesLeftQueued", "Table", local.metrics_table, { label = "left QUEUED" }],
        [local.metrics_namespace, "WriteConflicts", "Table", local.metrics_table, { label = "write conflicts" }],
      ]
    },
    {
      title   = "Reconciler (per pass) and worker chunks"
      stat    = "Sum"
      period  = local.backlog_alarm_period
      stacked = false
      metrics = [
        [local.metrics_namespace, "ReconcileRedispatched", "Table", local.metrics_table, { label = "re-dispatched" }],
        [local.metrics_namespace, "ReconcileFailed", "Table", local.metrics_table, { label = "recorded FAILED" }],
        [local.metrics_namespace, "ChunkDuration", "Table", local.metrics_table, { label = "chunk duration (s), max", stat = "Maximum", yAxis = "right" }],
      ]
    },
  ]

  dashboard_body = {
    start          = "-PT6H"
    periodOverride = "inherit"
    widgets = concat(
      [{
        type   = "alarm"
        x      = 0
        y      = 0
        width  = 24
        height = 2
        properties = {
          title = "Alarms"
          alarms = [
            aws_cloudwatch_metric_alarm.dead_letters.arn,
            aws_cloudwatch_metric_alarm.backlog_age.arn,
            aws_cloudwatch_metric_alarm.failed_rate.arn,
            aws_cloudwatch_metric_alarm.dispatcher_errors.arn,
          ]
        }
      }],
      [for i, w in local.dashboard_widgets : {
        type       = "metric"
        x          = (i % 2) * 12
        y          = 2 + floor(i / 2) * 6
        width      = 12
        height     = 6
        properties = merge(local.metric_widget_defaults, { yAxis = { left = { min = 0 } } }, w)
      }],
    )
  }
}

resource "aws_cloudwatch_dashboard" "pipeline" {
  dashboard_name = local.dashboard_name
  dashboard_body = jsonencode(local.dashboard_body)
}
