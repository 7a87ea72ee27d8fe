################################################################################
# IAM: each role grants exactly what its principal calls.
#
# tests/tests/infra_contract.rs compares the actions below with the SDK
# operations each binary makes (dispatcher/src, worker/src, core/src) and
# fails on any difference. Resources are named wherever the service allows.
################################################################################

################################################################################
# Dispatcher (Lambda execution role; the function itself belongs to
# `cargo lambda deploy --iam-role`)
################################################################################

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dispatcher" {
  name                 = "${local.global_name_prefix}-dispatcher"
  description          = "image-labeler dispatcher Lambda: submits Batch jobs, claims and records images, writes manifests"
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "dispatcher" {
  # dispatch::submit: SubmitJob with the queue ARN and the job definition
  # name (Batch authorises the resolved revision, so every revision).
  statement {
    sid     = "SubmitLabelingJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.this.arn,
      local.job_definition_arn_base,
      "${local.job_definition_arn_base}:*",
    ]
  }

  # core/src/store.rs: claim and record_skipped (PutItem); record_submitted,
  # release_claim and fail_if_still_queued (UpdateItem); remove (DeleteItem,
  # then labeling::remove_stale_entries: Query and DeleteItem of the label
  # entries); conflict reads (GetItem).
  statement {
    sid = "ResultsTable"
    actions = [
      "dynamodb:DeleteItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.results.arn]
  }

  # The reconciler finds QUEUED records through the sparse by-status index
  # (a Query, never a Scan).
  statement {
    sid       = "ResultsIndexes"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.results.arn}/index/*"]
  }

  # The reconciler asks Batch about the jobs of old QUEUED records, and a
  # resubmission adopts a live job of the same deterministic name before
  # submitting another. DescribeJobs and ListJobs have no resource type in
  # IAM (they read jobs by id or by queue), so "*" is the only valid value.
  statement {
    sid       = "TrackJobs"
    actions   = ["batch:DescribeJobs", "batch:ListJobs"]
    resources = ["*"]
  }

  # dispatch::submit writes manifests; dispatch::job_ended reads them back.
  statement {
    sid       = "Manifests"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.images.arn}/${var.manifest_prefix}*"]
  }

  # restore::current_version asks which version of a key is current after
  # a version delete (a console undelete): HeadObject, which IAM authorises
  # as s3:GetObject.
  statement {
    sid       = "CurrentVersions"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.images.arn}/*"]
  }

  # Lambda writes the function's logs with its execution role.
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.dispatcher.arn}:*"]
  }

  # Lambda sends async invocations that failed twice (S3 direct notifications,
  # Batch state change events) to the on-failure destination with this role.
  statement {
    sid       = "FailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # Queued mode: the SQS event source mapping polls with this role.
  dynamic "statement" {
    for_each = local.queued ? [aws_sqs_queue.events[0].arn] : []

    content {
      sid = "PollEvents"
      actions = [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
      ]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "dispatcher" {
  name   = "dispatcher"
  role   = aws_iam_role.dispatcher.id
  policy = data.aws_iam_policy_document.dispatcher.json
}

################################################################################
# Worker: job role (the container's AWS credentials)
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "job" {
  name                 = "${local.global_name_prefix}-worker-job"
  description          = "image-labeler worker container: reads images and manifests, calls DetectLabels, writes results"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "job" {
  # Rekognition reads S3Object images with the caller's permissions, version
  # included (worker/src/source.rs sets S3Object.version); the worker reads
  # manifests (run::read_manifest) and images itself: the first 64 KiB of
  # each to tell its format, whole ones it converts (source::prepare).
  statement {
    sid       = "ReadImagesAndManifests"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.images.arn}/*"]
  }

  # DetectLabels has no resource type in IAM (it acts on caller-supplied
  # images, not on a Rekognition resource), so "*" is the only valid value.
  statement {
    sid       = "DetectLabels"
    actions   = ["rekognition:DetectLabels"]
    resources = ["*"]
  }

  # core/src/labeling.rs: record_labeled is one TransactWriteItems of an
  # Update (dynamodb:UpdateItem) and Puts (dynamodb:PutItem): transactions
  # are authorised per action, there is no dynamodb:TransactWriteItems
  # permission. record_failed (UpdateItem), remove_stale_entries (Query,
  # DeleteItem), store::get_image (GetItem). The worker never reads the
  # by-label index.
  statement {
    sid = "ResultsTable"
    actions = [
      "dynamodb:DeleteItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.results.arn]
  }
}

resource "aws_iam_role_policy" "job" {
  name   = "worker"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

################################################################################
# Worker: execution role (ECS agent pulls the image and ships logs)
################################################################################

resource "aws_iam_role" "execution" {
  name                 = "${local.global_name_prefix}-worker-execution"
  description          = "image-labeler worker task execution: pulls the worker image, writes its logs"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullWorkerImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.worker.arn]
  }

  # GetAuthorizationToken returns a registry-wide token and supports no
  # resource-level permissions; "*" is the only valid value.
  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

################################################################################
# EC2/SPOT compute only: the container instances' role
################################################################################

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ecs_instance" {
  count = local.ec2_compute ? 1 : 0

  # name_prefix gets a unique suffix, so no region is needed (nor fits: IAM
  # allows 38 characters of prefix).
  name_prefix          = "${var.name_prefix}-instance-"
  description          = "image-labeler Batch container instances (EC2/SPOT compute only)"
  assume_role_policy   = data.aws_iam_policy_document.ec2_assume.json
  max_session_duration = 3600

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role_policy_attachment" "ecs_instance" {
  count = local.ec2_compute ? 1 : 0

  role       = aws_iam_role.ecs_instance[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "ecs_instance" {
  count = local.ec2_compute ? 1 : 0

  name_prefix = "${var.name_prefix}-instance-"
  role        = aws_iam_role.ecs_instance[0].name

  lifecycle {
    create_before_destroy = true
  }
}

################################################################################
# create_vpc only: VPC flow logs delivery
################################################################################

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  name                 = "${local.global_name_prefix}-flow-logs"
  description          = "image-labeler VPC flow logs delivery to CloudWatch Logs"
  assume_role_policy   = data.aws_iam_policy_document.flow_logs_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  statement {
    sid       = "DeliverFlowLogs"
    actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.flow_logs[0].arn}:*"]
  }

  statement {
    sid       = "FindLogGroup"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  name   = "flow-logs"
  role   = aws_iam_role.flow_logs[0].id
  policy = data.aws_iam_policy_document.flow_logs[0].json
}

################################################################################
# Viewers: read the results and open the images (labeler get, find, status,
# export and serve). Attach to the people or roles that inspect results.
################################################################################

data "aws_iam_policy_document" "viewer" {
  # cli/src/commands/{get,find,status,export}.rs and cli/src/serve/api.rs:
  # GetItem on the table, Query on both indexes, Scan for status, export
  # and the gallery's pages. Nothing writes.
  statement {
    sid       = "ReadResults"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [aws_dynamodb_table.results.arn, "${aws_dynamodb_table.results.arn}/index/*"]
  }

  # The gallery's presigned URLs carry the signer's permissions: the browser
  # opening them needs GetObject (GetObjectVersion for versioned records).
  statement {
    sid       = "OpenImages"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.images.arn}/*"]
  }
}

resource "aws_iam_policy" "viewer" {
  name        = "${local.global_name_prefix}-viewer"
  description = "image-labeler: read the results table and open the images (labeler get, find, status, export, serve); writes nothing"
  policy      = data.aws_iam_policy_document.viewer.json
}
