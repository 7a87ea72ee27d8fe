# Every trigger_mode × compute_type plans a job definition Batch accepts for
# that compute, and a queue that reaches it. EC2 and SPOT run in the created
# VPC (their instances must get no public IP).

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

override_resource {
  target          = aws_batch_compute_environment.this["FARGATE_SPOT"]
  override_during = plan
  values          = { arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate-spot" }
}

override_resource {
  target          = aws_batch_compute_environment.this["FARGATE"]
  override_during = plan
  values          = { arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate" }
}

override_resource {
  target          = aws_batch_compute_environment.this["EC2"]
  override_during = plan
  values          = { arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-ec2" }
}

override_resource {
  target          = aws_batch_compute_environment.this["SPOT"]
  override_during = plan
  values          = { arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-spot" }
}

override_data {
  target = data.aws_lambda_functions.all
  values = { function_names = ["image-labeler-dispatcher"] }
}

variables {
  worker_image_tag = "0123456789ab"
}

run "queued_fargate_spot_runs_arm64_fargate_tasks_with_on_demand_fargate_second" {
  command = plan

  variables {
    trigger_mode = "queued"
    compute_type = "FARGATE_SPOT"
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["FARGATE"])
    error_message = "Fargate Spot jobs need a FARGATE job definition."
  }

  assert {
    condition = (
      jsondecode(aws_batch_job_definition.worker[0].container_properties).runtimePlatform == { operatingSystemFamily = "LINUX", cpuArchitecture = "ARM64" } &&
      jsondecode(aws_batch_job_definition.worker[0].container_properties).networkConfiguration == { assignPublicIp = "DISABLED" }
    )
    error_message = "Fargate tasks must run the arm64 image without a public IP."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).resourceRequirements == [{ type = "VCPU", value = "1" }, { type = "MEMORY", value = "2048" }]
    error_message = "The job definition's resources must be worker_vcpu and worker_memory_mib."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-labeler-worker:0123456789ab"
    error_message = "The job definition must run the pushed image tag from the stack's repository."
  }

  assert {
    condition = (
      keys(aws_batch_compute_environment.this) == ["FARGATE", "FARGATE_SPOT"] &&
      aws_batch_compute_environment.this["FARGATE_SPOT"].compute_resources[0].type == "FARGATE_SPOT" &&
      aws_batch_compute_environment.this["FARGATE"].compute_resources[0].type == "FARGATE"
    )
    error_message = "Fargate Spot comes with an on-demand Fargate environment."
  }

  assert {
    condition = (
      one([for o in aws_batch_job_queue.this.compute_environment_order : o.compute_environment if o.order == 1]) == aws_batch_compute_environment.this["FARGATE_SPOT"].arn &&
      one([for o in aws_batch_job_queue.this.compute_environment_order : o.compute_environment if o.order == 2]) == aws_batch_compute_environment.this["FARGATE"].arn
    )
    error_message = "The queue must try Fargate Spot first and on-demand Fargate second."
  }

  assert {
    condition     = contains(aws_batch_job_definition.worker[0].retry_strategy[0].evaluate_on_exit[*].on_status_reason, "Your Spot Task was interrupted*")
    error_message = "A Fargate Spot interruption must be retried."
  }

  assert {
    condition     = length(aws_lambda_event_source_mapping.events) == 1 && length(aws_iam_role.ecs_instance) == 0
    error_message = "Queued Fargate: an event source mapping, and no EC2 instance role."
  }
}

run "queued_fargate_spot_without_the_fallback_has_one_environment" {
  command = plan

  variables {
    fargate_on_demand_fallback = false
  }

  assert {
    condition     = keys(aws_batch_compute_environment.this) == ["FARGATE_SPOT"] && length(aws_batch_job_queue.this.compute_environment_order) == 1
    error_message = "fargate_on_demand_fallback = false must leave Fargate Spot alone in the queue."
  }
}

run "direct_fargate_spot_plans_the_same_compute_with_direct_notifications" {
  command = plan

  variables {
    trigger_mode = "direct"
    compute_type = "FARGATE_SPOT"
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["FARGATE"]) && length(aws_batch_compute_environment.this) == 2
    error_message = "Direct Fargate Spot: a FARGATE job definition and both Fargate environments."
  }

  assert {
    condition     = length(aws_lambda_permission.s3) == 1 && length(aws_lambda_event_source_mapping.events) == 0
    error_message = "Direct mode: S3 invokes the function, no event source mapping."
  }
}

run "queued_fargate_runs_on_demand_fargate_only" {
  command = plan

  variables {
    trigger_mode      = "queued"
    compute_type      = "FARGATE"
    worker_vcpu       = 0.5
    worker_memory_mib = 1024
  }

  assert {
    condition     = keys(aws_batch_compute_environment.this) == ["FARGATE"] && aws_batch_compute_environment.this["FARGATE"].compute_resources[0].type == "FARGATE"
    error_message = "compute_type = FARGATE is one on-demand Fargate environment."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).resourceRequirements == [{ type = "VCPU", value = "0.5" }, { type = "MEMORY", value = "1024" }]
    error_message = "Fargate takes fractional vCPUs, rendered as the job definition's VCPU."
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["FARGATE"]) && length(aws_lambda_event_source_mapping.events) == 1
    error_message = "Queued Fargate: a FARGATE job definition and an event source mapping."
  }
}

run "direct_fargate_runs_on_demand_fargate_with_direct_notifications" {
  command = plan

  variables {
    trigger_mode = "direct"
    compute_type = "FARGATE"
  }

  assert {
    condition     = keys(aws_batch_compute_environment.this) == ["FARGATE"] && aws_batch_job_definition.worker[0].platform_capabilities == toset(["FARGATE"])
    error_message = "Direct Fargate: one Fargate environment and a FARGATE job definition."
  }

  assert {
    condition     = length(aws_lambda_permission.s3) == 1 && length(aws_sqs_queue.events) == 0
    error_message = "Direct mode: S3 invokes the function, no events queue."
  }
}

run "queued_ec2_runs_graviton_instances_in_private_subnets_registering_through_ecs_endpoints" {
  command = plan

  variables {
    trigger_mode      = "queued"
    compute_type      = "EC2"
    worker_vcpu       = 2
    worker_memory_mib = 3072
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["EC2"])
    error_message = "EC2 compute needs an EC2 job definition."
  }

  assert {
    condition = alltrue([
      for key in ["runtimePlatform", "networkConfiguration", "fargatePlatformConfiguration"] :
      !contains(keys(jsondecode(aws_batch_job_definition.worker[0].container_properties)), key)
    ])
    error_message = "Batch refuses Fargate-only container properties in an EC2 job definition."
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).resourceRequirements == [{ type = "VCPU", value = "2" }, { type = "MEMORY", value = "3072" }]
    error_message = "The EC2 job definition's resources must be worker_vcpu and worker_memory_mib."
  }

  assert {
    condition = (
      keys(aws_batch_compute_environment.this) == ["EC2"] &&
      aws_batch_compute_environment.this["EC2"].compute_resources[0].allocation_strategy == "BEST_FIT_PROGRESSIVE" &&
      aws_batch_compute_environment.this["EC2"].compute_resources[0].instance_type == toset(["c7g", "m7g", "c6g", "m6g"]) &&
      aws_batch_compute_environment.this["EC2"].compute_resources[0].ec2_configuration[0].image_type == "ECS_AL2023" &&
      aws_batch_compute_environment.this["EC2"].compute_resources[0].instance_role == aws_iam_instance_profile.ecs_instance[0].arn
    )
    error_message = "EC2 compute: Graviton instances from the ECS AL2023 AMI with the instance profile."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.private : !s.map_public_ip_on_launch])
    error_message = "EC2 instances must land in subnets that assign no public IP."
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["ecr.api", "ecr.dkr", "logs", "rekognition", "ecs", "ecs-agent", "ecs-telemetry"])
    error_message = "Instances in private subnets register with ECS only through the ecs, ecs-agent and ecs-telemetry endpoints."
  }
}

run "direct_ec2_plans_the_same_compute_with_direct_notifications" {
  command = plan

  variables {
    trigger_mode = "direct"
    compute_type = "EC2"
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["EC2"]) && keys(aws_batch_compute_environment.this) == ["EC2"]
    error_message = "Direct EC2: an EC2 job definition and one EC2 environment."
  }

  assert {
    condition     = length(aws_lambda_permission.s3) == 1 && length(aws_lambda_event_source_mapping.events) == 0
    error_message = "Direct mode: S3 invokes the function, no event source mapping."
  }
}

run "queued_spot_runs_spot_instances_price_capacity_optimized" {
  command = plan

  variables {
    trigger_mode = "queued"
    compute_type = "SPOT"
  }

  assert {
    condition = (
      keys(aws_batch_compute_environment.this) == ["SPOT"] &&
      aws_batch_compute_environment.this["SPOT"].compute_resources[0].type == "SPOT" &&
      aws_batch_compute_environment.this["SPOT"].compute_resources[0].allocation_strategy == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    )
    error_message = "SPOT compute: one Spot environment, price-capacity optimised."
  }

  assert {
    condition     = aws_batch_job_definition.worker[0].platform_capabilities == toset(["EC2"]) && contains(aws_batch_job_definition.worker[0].retry_strategy[0].evaluate_on_exit[*].on_status_reason, "Host EC2*")
    error_message = "SPOT jobs need an EC2 job definition that retries reclaimed hosts."
  }

  assert {
    condition     = length(aws_lambda_event_source_mapping.events) == 1 && contains(keys(aws_vpc_endpoint.interface), "ecs-agent")
    error_message = "Queued SPOT: an event source mapping, and the ECS endpoints."
  }
}

run "direct_spot_plans_the_same_compute_with_direct_notifications" {
  command = plan

  variables {
    trigger_mode = "direct"
    compute_type = "SPOT"
  }

  assert {
    condition     = keys(aws_batch_compute_environment.this) == ["SPOT"] && aws_batch_job_definition.worker[0].platform_capabilities == toset(["EC2"])
    error_message = "Direct SPOT: one Spot environment and an EC2 job definition."
  }

  assert {
    condition     = length(aws_lambda_permission.s3) == 1 && length(aws_sqs_queue.events) == 0
    error_message = "Direct mode: S3 invokes the function, no events queue."
  }
}

run "no_job_definition_is_registered_before_an_image_exists" {
  command = plan

  variables {
    worker_image_tag = ""
  }

  assert {
    condition     = length(aws_batch_job_definition.worker) == 0
    error_message = "A job definition for an image that was never pushed would fail every job."
  }
}

run "content_reuse_is_on_by_default_with_a_thirty_day_ttl" {
  command = plan

  assert {
    condition = [
      for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.value
      if contains(["LABELER_REUSE_LABELS", "LABELER_REUSE_TTL_DAYS"], e.name)
    ] == ["true", "30"]
    error_message = "The worker reuses labels of the same content by default, for 30 days."
  }
}

run "content_reuse_can_be_turned_off" {
  command = plan

  variables {
    reuse_labels   = false
    reuse_ttl_days = 7
  }

  assert {
    condition = [
      for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.value
      if contains(["LABELER_REUSE_LABELS", "LABELER_REUSE_TTL_DAYS"], e.name)
    ] == ["false", "7"]
    error_message = "reuse_labels and reuse_ttl_days reach the worker's environment."
  }
}

run "a_reuse_ttl_outside_one_day_to_ten_years_is_refused_at_plan_time" {
  command = plan

  variables {
    reuse_ttl_days = 0
  }

  expect_failures = [var.reuse_ttl_days]
}

run "the_worker_labels_with_rekognition_by_default_and_no_budget" {
  command = plan

  assert {
    condition = [
      for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.value
      if contains(["LABELER_BACKEND", "LABELER_CASCADE_BELOW", "LABELER_REKOGNITION_BUDGET", "LABELER_BUDGET_PERIOD"], e.name)
    ] == ["rekognition", "60", "none", "month"]
    error_message = "label_backend defaults to rekognition, with the cascade's defaults and no budget."
  }
}

run "a_cascade_under_a_daily_budget_reaches_the_worker" {
  command = plan

  variables {
    label_backend             = "cascade"
    cascade_below             = 45
    rekognition_budget        = 5000
    rekognition_budget_period = "day"
  }

  assert {
    condition = [
      for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.value
      if contains(["LABELER_BACKEND", "LABELER_CASCADE_BELOW", "LABELER_REKOGNITION_BUDGET", "LABELER_BUDGET_PERIOD"], e.name)
    ] == ["cascade", "45", "5000", "day"]
    error_message = "label_backend, cascade_below, rekognition_budget and its period reach the worker's environment."
  }
}

run "an_unknown_backend_or_a_fractional_budget_is_refused_at_plan_time" {
  command = plan

  variables {
    label_backend             = "gpu"
    rekognition_budget        = 2.5
    rekognition_budget_period = "week"
    cascade_below             = 101
  }

  expect_failures = [var.label_backend, var.rekognition_budget, var.rekognition_budget_period, var.cascade_below]
}

run "the_local_model_stores_labels_from_25_percent_unless_told_otherwise" {
  command = plan

  variables {
    label_backend = "local"
  }

  assert {
    condition     = output.dispatcher_env["MIN_CONFIDENCE"] == "25"
    error_message = "The local backend's default MIN_CONFIDENCE is 25."
  }
}

run "an_explicit_min_confidence_wins_over_the_backend_default" {
  command = plan

  variables {
    label_backend  = "local"
    min_confidence = 55
  }

  assert {
    condition     = output.dispatcher_env["MIN_CONFIDENCE"] == "55"
    error_message = "min_confidence reaches the dispatcher's environment."
  }
}
