################################################################################
# Dispatcher log group: created here, before the function exists, so that
# retention applies from the first invocation (Lambda would otherwise create
# it with infinite retention).
################################################################################

resource "aws_cloudwatch_log_group" "dispatcher" {
  #checkov:skip=CKV_AWS_158:Dispatcher logs hold bucket names, keys and job ids, no secrets; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service principal.
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): outcomes and reasons are stored in DynamoDB, so logs are operational only.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
}

################################################################################
# Dead-letter queue: events the dispatcher could not handle, whatever the path
#   queued: SQS redrive after 5 receives;
#   direct and Batch state events: Lambda's on-failure destination after 2
#   retries, and EventBridge's dead-letter queue when it cannot invoke at all.
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name_prefix}-dispatch-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.batch_job_failed.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dlq.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

################################################################################
# Queued mode: S3 -> SQS -> Lambda. The queue buffers uploads (also while the
# function does not exist yet) and the event source mapping packs up to
# sqs_batch_size events, gathered for batching_window_seconds, into one
# invocation: many images per Batch job.
################################################################################

resource "aws_sqs_queue" "events" {
  count = local.queued ? 1 : 0

  name = "${var.name_prefix}-events"
  # Lambda's guidance: at least six times the function timeout, plus the
  # batching window during which messages are already in flight.
  visibility_timeout_seconds = 6 * var.dispatcher_timeout_seconds + var.batching_window_seconds
  message_retention_seconds  = 1209600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  count = local.queued ? 1 : 0

  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events[0].arn]
  })
}

data "aws_iam_policy_document" "events_queue" {
  count = local.queued ? 1 : 0

  statement {
    sid       = "S3Notifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events[0].arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.images.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.events[0].arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  count = local.queued ? 1 : 0

  queue_url = aws_sqs_queue.events[0].id
  policy    = data.aws_iam_policy_document.events_queue[0].json
}

resource "aws_lambda_event_source_mapping" "events" {
  count = local.queued && local.function_exists ? 1 : 0

  event_source_arn                   = aws_sqs_queue.events[0].arn
  function_name                      = local.function_name
  batch_size                         = var.sqs_batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.dispatcher_max_concurrency
  }

  depends_on = [aws_iam_role_policy.dispatcher]
}

################################################################################
# S3 notifications. Filters are the watched prefixes (local.notification_prefixes),
# never suffixes: S3 matches suffixes case-sensitively and IMG_0001.Jpg would
# raise no event. The dispatcher judges suffixes without regard to case and
# ignores manifests (manifest_prefix) by name. Lifecycle expirations
# are events of their own (they raise no ObjectRemoved): an image expired by a
# lifecycle rule must lose its record like a deleted one.
################################################################################

locals {
  notification_events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]
}

resource "aws_lambda_permission" "s3" {
  count = !local.queued && local.function_exists ? 1 : 0

  statement_id   = "AllowImagesBucketNotifications"
  action         = "lambda:InvokeFunction"
  function_name  = local.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.images.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "images" {
  count = local.queued || local.function_exists ? 1 : 0

  bucket = aws_s3_bucket.images.id

  dynamic "queue" {
    for_each = local.queued ? local.notification_prefixes : []

    content {
      queue_arn     = aws_sqs_queue.events[0].arn
      events        = local.notification_events
      filter_prefix = queue.value == "" ? null : queue.value
    }
  }

  dynamic "lambda_function" {
    for_each = local.queued ? [] : local.notification_prefixes

    content {
      lambda_function_arn = local.function_arn
      events              = local.notification_events
      filter_prefix       = lambda_function.value == "" ? null : lambda_function.value
    }
  }

  depends_on = [
    aws_sqs_queue_policy.events,
    aws_lambda_permission.s3,
  ]
}

################################################################################
# Asynchronous invocations (direct S3 notifications, EventBridge): two
# retries, then the dead-letter queue.
################################################################################

resource "aws_lambda_function_event_invoke_config" "dispatcher" {
  count = local.function_exists ? 1 : 0

  function_name                = local.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 21600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }

  depends_on = [aws_iam_role_policy.dispatcher]
}

################################################################################
# Batch jobs that FAILED (including jobs cancelled while RUNNABLE) on our
# queue: the dispatcher marks their still-QUEUED images FAILED.
################################################################################

resource "aws_cloudwatch_event_rule" "batch_job_failed" {
  name        = "${var.name_prefix}-batch-job-failed"
  description = "image-labeler: Batch jobs of ${local.job_queue_name} that failed, for the dispatcher to record their images as FAILED"

  event_pattern = jsonencode({
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      status   = ["FAILED"]
      jobQueue = [aws_batch_job_queue.this.arn]
    }
  })
}

resource "aws_lambda_permission" "events" {
  count = local.function_exists ? 1 : 0

  statement_id   = "AllowBatchJobFailedEvents"
  action         = "lambda:InvokeFunction"
  function_name  = local.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.batch_job_failed.arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_target" "dispatcher" {
  count = local.function_exists ? 1 : 0

  rule      = aws_cloudwatch_event_rule.batch_job_failed.name
  target_id = "dispatcher"
  arn       = local.function_arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }

  depends_on = [aws_lambda_permission.events]
}

################################################################################
# The reconciler: a scheduled invocation that converges what lost events left
# behind (images QUEUED past their lease, jobs that died unreported). The
# dispatcher recognises the constant input {"reconcile": {}}.
################################################################################

resource "aws_cloudwatch_event_rule" "reconcile" {
  count = local.function_exists ? 1 : 0

  name                = "${var.name_prefix}-reconcile"
  description         = "image-labeler: invoke the dispatcher's reconciler on a schedule"
  schedule_expression = var.reconcile_schedule
}

resource "aws_lambda_permission" "reconcile" {
  count = local.function_exists ? 1 : 0

  statement_id   = "AllowReconcileSchedule"
  action         = "lambda:InvokeFunction"
  function_name  = local.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.reconcile[0].arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_target" "reconcile" {
  count = local.function_exists ? 1 : 0

  rule      = aws_cloudwatch_event_rule.reconcile[0].name
  target_id = "dispatcher"
  arn       = local.function_arn
  input     = jsonencode({ reconcile = {} })

  # A tick that cannot be delivered within a few minutes is superseded by the
  # next one; queueing stale ticks would only run the reconciler back to back.
  retry_policy {
    maximum_event_age_in_seconds = 300
    maximum_retry_attempts       = 3
  }

  depends_on = [aws_lambda_permission.reconcile]
}
