# The worker fleet shares one DetectLabels rate: the region's documented
# default quota unless rekognition_tps says otherwise, split by the most
# worker jobs Batch can run at once. Both reach every worker through the
# job definition's environment.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

variables {
  worker_image_tag = "0123456789ab"
}

run "us_east_1_defaults_to_its_documented_quota_of_50" {
  command = plan

  assert {
    condition     = output.rekognition_tps == 50
    error_message = "us-east-1's default DetectLabels quota is 50 per second."
  }

  assert {
    condition     = { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_RATE"] == "50"
    error_message = "The job definition must hand the workers the fleet rate."
  }
}

run "eu_central_1_defaults_to_the_documented_quota_of_other_regions" {
  command = plan

  variables {
    region = "eu-central-1"
  }

  assert {
    condition     = output.rekognition_tps == 5 && { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_RATE"] == "5"
    error_message = "Regions other than us-east-1, us-west-2 and eu-west-1 default to 5 DetectLabels calls per second."
  }
}

run "us_west_2_defaults_to_50" {
  command = plan

  variables {
    region = "us-west-2"
  }

  assert {
    condition     = output.rekognition_tps == 50
    error_message = "us-west-2's default DetectLabels quota is 50 per second."
  }
}

run "a_raised_quota_overrides_the_default" {
  command = plan

  variables {
    region          = "eu-central-1"
    rekognition_tps = 12.5
  }

  assert {
    condition     = output.rekognition_tps == 12.5 && { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_RATE"] == "12.5"
    error_message = "rekognition_tps must replace the region's default, fractions included."
  }
}

run "fargate_spot_with_its_on_demand_fallback_counts_both_environments" {
  command = plan

  assert {
    condition     = output.worker_fleet_size == 32 && { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_SIZE"] == "32"
    error_message = "16 vCPUs of 1-vCPU workers in the Spot and the on-demand environment are 32 workers at once."
  }
}

run "quarter_vcpu_workers_without_fallback" {
  command = plan

  variables {
    fargate_on_demand_fallback = false
    max_vcpus                  = 16
    worker_vcpu                = 0.25
    worker_memory_mib          = 1024
  }

  assert {
    condition     = output.worker_fleet_size == 64 && { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_SIZE"] == "64"
    error_message = "16 vCPUs run 64 quarter-vCPU workers."
  }
}

run "a_partial_worker_does_not_count" {
  command = plan

  variables {
    compute_type      = "FARGATE"
    max_vcpus         = 10
    worker_vcpu       = 4
    worker_memory_mib = 8192
  }

  assert {
    condition     = output.worker_fleet_size == 2 && { for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_FLEET_SIZE"] == "2"
    error_message = "10 vCPUs hold two 4-vCPU workers, not 2.5."
  }
}

run "ec2_instances_run_max_vcpus_over_worker_vcpu_jobs" {
  command = plan

  variables {
    compute_type = "EC2"
    max_vcpus    = 32
    worker_vcpu  = 2
  }

  assert {
    condition     = output.worker_fleet_size == 16
    error_message = "32 vCPUs of EC2 instances run sixteen 2-vCPU jobs."
  }
}

run "the_worker_keeps_retrying_throttled_calls_within_a_budget_that_ends_before_the_attempt_timeout" {
  command = plan

  assert {
    condition = (
      tonumber({ for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_TIME_BUDGET_SECONDS"]) +
      tonumber({ for e in jsondecode(aws_batch_job_definition.worker[0].container_properties).environment : e.name => e.value }["LABELER_DRAIN_SECONDS"])
      < aws_batch_job_definition.worker[0].timeout[0].attempt_duration_seconds
    )
    error_message = "LABELER_TIME_BUDGET_SECONDS plus LABELER_DRAIN_SECONDS must end before Batch stops the attempt."
  }
}
