# Settings Batch, SQS or EventBridge would accept and then fail with, or fail
# halfway through a deploy, are refused when planning, with a message that
# says what to change.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

variables {
  worker_image_tag = "0123456789ab"
}

run "fractional_vcpus_on_ec2_are_refused" {
  command = plan

  variables {
    compute_type = "EC2"
    worker_vcpu  = 0.5
  }

  expect_failures = [var.worker_vcpu]
}

run "fractional_vcpus_on_spot_instances_are_refused" {
  command = plan

  variables {
    compute_type = "SPOT"
    worker_vcpu  = 0.25
  }

  expect_failures = [var.worker_vcpu]
}

run "fractional_vcpus_on_fargate_spot_are_accepted" {
  command = plan

  variables {
    worker_vcpu       = 0.25
    worker_memory_mib = 512
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).resourceRequirements[0].value == "0.25"
    error_message = "Fargate runs a quarter vCPU."
  }
}

run "a_memory_size_fargate_does_not_offer_for_the_vcpus_is_refused" {
  command = plan

  variables {
    worker_vcpu       = 1
    worker_memory_mib = 1024
  }

  expect_failures = [var.worker_memory_mib]
}

run "a_memory_size_between_fargate_steps_is_refused" {
  command = plan

  variables {
    worker_vcpu       = 8
    worker_memory_mib = 18432
  }

  expect_failures = [var.worker_memory_mib]
}

run "any_memory_size_is_accepted_on_ec2" {
  command = plan

  variables {
    compute_type      = "EC2"
    worker_memory_mib = 1536
  }

  assert {
    condition     = jsondecode(aws_batch_job_definition.worker[0].container_properties).resourceRequirements[1] == { type = "MEMORY", value = "1536" }
    error_message = "EC2 jobs take any memory size the instances hold."
  }
}

run "max_vcpus_below_one_worker_is_refused" {
  command = plan

  variables {
    worker_vcpu       = 4
    worker_memory_mib = 8192
    max_vcpus         = 2
  }

  expect_failures = [var.max_vcpus]
}

run "sqs_batches_above_ten_without_a_batching_window_are_refused" {
  command = plan

  variables {
    sqs_batch_size          = 100
    batching_window_seconds = 0
  }

  expect_failures = [var.sqs_batch_size]
}

run "sqs_batches_of_ten_need_no_batching_window" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = { function_names = ["image-labeler-dispatcher"] }
  }

  variables {
    sqs_batch_size          = 10
    batching_window_seconds = 0
  }

  assert {
    condition     = aws_lambda_event_source_mapping.events[0].batch_size == 10 && aws_lambda_event_source_mapping.events[0].maximum_batching_window_in_seconds == 0
    error_message = "Batches of up to ten messages need no batching window."
  }
}

run "a_rate_with_a_plural_unit_for_one_is_refused" {
  command = plan

  variables {
    reconcile_schedule = "rate(1 minutes)"
  }

  expect_failures = [var.reconcile_schedule]
}

run "a_schedule_that_is_not_an_eventbridge_expression_is_refused" {
  command = plan

  variables {
    reconcile_schedule = "every 5 minutes"
  }

  expect_failures = [var.reconcile_schedule]
}

run "a_cron_schedule_is_accepted" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = { function_names = ["image-labeler-dispatcher"] }
  }

  variables {
    reconcile_schedule = "cron(0/10 * * * ? *)"
  }

  assert {
    condition     = aws_cloudwatch_event_rule.reconcile[0].schedule_expression == "cron(0/10 * * * ? *)"
    error_message = "A cron() schedule must reach the reconcile rule unchanged."
  }
}

run "the_mutable_latest_tag_is_refused" {
  command = plan

  variables {
    worker_image_tag = "latest"
  }

  expect_failures = [var.worker_image_tag]
}

run "a_rekognition_rate_of_zero_is_refused" {
  command = plan

  variables {
    rekognition_tps = 0
  }

  expect_failures = [var.rekognition_tps]
}

run "a_negative_rekognition_rate_is_refused" {
  command = plan

  variables {
    rekognition_tps = -5
  }

  expect_failures = [var.rekognition_tps]
}

run "a_backlog_alarm_below_five_minutes_is_refused" {
  command = plan

  variables {
    backlog_alarm_seconds = 60
  }

  expect_failures = [var.backlog_alarm_seconds]
}

run "a_fractional_backlog_alarm_is_refused" {
  command = plan

  variables {
    backlog_alarm_seconds = 3600.5
  }

  expect_failures = [var.backlog_alarm_seconds]
}

run "a_failure_rate_of_zero_percent_is_refused" {
  command = plan

  variables {
    failed_rate_alarm_percent = 0
  }

  expect_failures = [var.failed_rate_alarm_percent]
}

run "a_failure_rate_of_a_hundred_percent_is_refused" {
  command = plan

  variables {
    failed_rate_alarm_percent = 100
  }

  expect_failures = [var.failed_rate_alarm_percent]
}

run "an_alarm_email_that_is_not_an_address_is_refused" {
  command = plan

  variables {
    alarm_email = "oncall.example.com"
  }

  expect_failures = [var.alarm_email]
}

run "an_alarm_topic_arn_that_is_not_an_sns_topic_is_refused" {
  command = plan

  variables {
    alarm_topic_arn = "arn:aws:sqs:us-east-1:123456789012:team-pager"
  }

  expect_failures = [var.alarm_topic_arn]
}

run "a_fifo_alarm_topic_is_refused" {
  command = plan

  variables {
    alarm_topic_arn = "arn:aws:sns:us-east-1:123456789012:team-pager.fifo"
  }

  expect_failures = [var.alarm_topic_arn]
}

run "an_alarm_email_and_an_alarm_topic_together_are_refused" {
  command = plan

  variables {
    alarm_email     = "oncall@example.com"
    alarm_topic_arn = "arn:aws:sns:us-east-1:123456789012:team-pager"
  }

  expect_failures = [var.alarm_email]
}
