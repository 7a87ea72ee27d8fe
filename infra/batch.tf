################################################################################
# Worker image
################################################################################

resource "aws_ecr_repository" "worker" {
  #checkov:skip=CKV_AWS_136:AES256 (ECR-managed) encryption: the image holds a compiled binary and no secrets, and a KMS key would add a key policy plus kms:Decrypt for the execution role on every task start.
  name                 = "${var.name_prefix}-worker"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "worker" {
  repository = aws_ecr_repository.worker.name

  # scripts/deploy.sh pushes single-platform images without attestations, so
  # every image is one manifest and counting images counts deployments.
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = {
        type = "expire"
      }
    }]
  })
}

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_158:Worker logs hold bucket names, keys and label counts, no secrets; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service principal.
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): labels and failure reasons are stored in DynamoDB, so logs are operational only.
  name              = "/aws/batch/${var.name_prefix}-worker"
  retention_in_days = var.log_retention_days
}

################################################################################
# Compute environments and job queue
################################################################################

locals {
  fargate = contains(["FARGATE", "FARGATE_SPOT"], var.compute_type)

  # The job queue's compute environments, in the queue's order: compute_type
  # first, then (Fargate Spot only) on-demand Fargate, which Batch uses once
  # the Spot environment runs max_vcpus. A list, because Batch returns the
  # queue's environments sorted by order, and blocks emitted in any other
  # order (a map's key order puts FARGATE before FARGATE_SPOT) would show a
  # diff on every plan.
  compute_environment_names = concat(
    [var.compute_type],
    var.compute_type == "FARGATE_SPOT" && var.fargate_on_demand_fallback ? ["FARGATE"] : [],
  )
  compute_environments = { for i, name in local.compute_environment_names : name => i + 1 }

  # Fargate's valid memory sizes per vCPU count, [min, max, step] in MiB
  # (0.25 vCPU also takes 512), read by the worker_memory_mib validation.
  fargate_memory = {
    "0.25" = [1024, 2048, 1024]
    "0.5"  = [1024, 4096, 1024]
    "1"    = [2048, 8192, 1024]
    "2"    = [4096, 16384, 1024]
    "4"    = [8192, 30720, 1024]
    "8"    = [16384, 61440, 4096]
    "16"   = [32768, 122880, 8192]
  }
  fargate_memory_range = lookup(local.fargate_memory, tostring(var.worker_vcpu), [0, 0, 1])
}

moved {
  from = aws_batch_compute_environment.this
  to   = aws_batch_compute_environment.this["FARGATE_SPOT"]
}

resource "aws_batch_compute_environment" "this" {
  for_each = local.compute_environments

  compute_environment_name_prefix = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}-"
  type                            = "MANAGED"
  state                           = "ENABLED"

  # No service_role: Batch uses its service-linked role AWSServiceRoleForBatch.

  compute_resources {
    type               = each.key
    max_vcpus          = var.max_vcpus
    subnets            = local.subnet_ids
    security_group_ids = [aws_security_group.worker.id]

    min_vcpus           = local.fargate ? null : 0
    instance_type       = local.fargate ? null : var.ec2_instance_types
    allocation_strategy = local.fargate ? null : (each.key == "SPOT" ? "SPOT_PRICE_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE")
    instance_role       = local.fargate ? null : aws_iam_instance_profile.ecs_instance[0].arn

    dynamic "ec2_configuration" {
      # Batch picks the ARM64 variant of the ECS-optimised AMI for Graviton types.
      for_each = local.fargate ? [] : ["ECS_AL2023"]

      content {
        image_type = ec2_configuration.value
      }
    }
  }

  lifecycle {
    create_before_destroy = true

    # Instances take the subnet's public IP setting (Batch has no switch for
    # it), and the worker must not be reachable from the internet.
    precondition {
      condition     = local.fargate || alltrue([for s in data.aws_subnet.worker : !s.map_public_ip_on_launch])
      error_message = "compute_type = ${var.compute_type} needs subnets that assign no public IPs; these do: ${join(", ", [for s in data.aws_subnet.worker : s.id if s.map_public_ip_on_launch])}."
    }
  }

  # The instance role must outlive the environment while it scales in.
  depends_on = [aws_iam_role_policy_attachment.ecs_instance]
}

resource "aws_batch_job_queue" "this" {
  name     = local.job_queue_name
  state    = "ENABLED"
  priority = 1

  dynamic "compute_environment_order" {
    for_each = local.compute_environment_names

    content {
      order               = local.compute_environments[compute_environment_order.value]
      compute_environment = aws_batch_compute_environment.this[compute_environment_order.value].arn
    }
  }

  # A job that can never start is cancelled instead of waiting forever; the
  # cancelled job FAILS, EventBridge reports it, and the dispatcher marks its
  # still-QUEUED images FAILED with Batch's reason (invariant 1).
  dynamic "job_state_time_limit_action" {
    for_each = toset([
      "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
      "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
      "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    ])

    content {
      state            = "RUNNABLE"
      action           = "CANCEL"
      reason           = job_state_time_limit_action.value
      max_time_seconds = var.runnable_timeout_seconds
    }
  }
}

################################################################################
# Job definition: rendered from the single shared template
# infra/job-definition.json (also used by the local stack and by the worker's
# contract tests). Nothing of it is restated here; only Fargate-only keys are
# dropped when the compute environment is EC2/SPOT.
################################################################################

locals {
  # DetectLabels quotas per account and region by default, as documented
  # when this was written; every other region defaults to 5. The account's
  # actual quota is in Service Quotas and can be raised there.
  rekognition_default_tps = {
    "us-east-1" = 50
    "us-west-2" = 50
    "eu-west-1" = 50
  }
  rekognition_tps = coalesce(var.rekognition_tps, lookup(local.rekognition_default_tps, local.region, 5))

  # The most worker jobs that can run at once: each compute environment of
  # the queue runs max_vcpus / worker_vcpu of them, and with the on-demand
  # fallback both are full exactly when the backlog is large. The workers
  # share the fleet rate by this count, so counting one environment only
  # would let a full fleet call DetectLabels at twice the quota.
  worker_fleet_size = max(1, floor(var.max_vcpus / var.worker_vcpu)) * length(local.compute_environments)

  fleet_rate = tostring(local.rekognition_tps)
  fleet_size = tostring(local.worker_fleet_size)

  job_definition_template = jsondecode(templatefile("${path.module}/job-definition.json", {
    image              = "${aws_ecr_repository.worker.repository_url}:${var.worker_image_tag}"
    execution_role_arn = aws_iam_role.execution.arn
    job_role_arn       = aws_iam_role.job.arn
    log_group          = aws_cloudwatch_log_group.worker.name
    region             = local.region
    vcpu               = tostring(var.worker_vcpu)
    memory             = tostring(var.worker_memory_mib)
    table_name         = aws_dynamodb_table.results.name
    reuse_labels       = tostring(var.reuse_labels)
    reuse_ttl_days     = tostring(var.reuse_ttl_days)
    fleet_rate         = local.fleet_rate
    fleet_size         = local.fleet_size
    label_backend      = var.label_backend
    cascade_below      = tostring(var.cascade_below)
    # The worker reads `none` as no cap: the variable is always set.
    rekognition_budget        = var.rekognition_budget == null ? "none" : tostring(var.rekognition_budget)
    rekognition_budget_period = var.rekognition_budget_period
  }))

  fargate_only_container_keys = ["fargatePlatformConfiguration", "networkConfiguration", "runtimePlatform"]

  container_properties = {
    for key, value in local.job_definition_template.containerProperties :
    key => value if local.fargate || !contains(local.fargate_only_container_keys, key)
  }
}

resource "aws_batch_job_definition" "worker" {
  count = var.worker_image_tag == "" ? 0 : 1

  name                  = local.job_definition_name
  type                  = local.job_definition_template.type
  platform_capabilities = local.fargate ? local.job_definition_template.platformCapabilities : ["EC2"]
  propagate_tags        = local.job_definition_template.propagateTags
  container_properties  = jsonencode(local.container_properties)

  retry_strategy {
    attempts = local.job_definition_template.retryStrategy.attempts

    dynamic "evaluate_on_exit" {
      for_each = local.job_definition_template.retryStrategy.evaluateOnExit

      content {
        action           = evaluate_on_exit.value.action
        on_exit_code     = try(evaluate_on_exit.value.onExitCode, null)
        on_reason        = try(evaluate_on_exit.value.onReason, null)
        on_status_reason = try(evaluate_on_exit.value.onStatusReason, null)
      }
    }
  }

  timeout {
    attempt_duration_seconds = local.job_definition_template.timeout.attemptDurationSeconds
  }
}
