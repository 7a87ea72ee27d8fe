# The dispatcher's wiring follows the function's existence in the account:
# nothing that invokes it before `cargo lambda deploy` has created it, all of
# it afterwards, and none of it again once the function is gone.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

variables {
  worker_image_tag = "0123456789ab"
}

run "a_first_deploy_plans_no_wiring_for_the_function_it_has_not_deployed_yet" {
  command = plan

  assert {
    condition = (
      length(aws_lambda_event_source_mapping.events) +
      length(aws_lambda_permission.s3) +
      length(aws_lambda_permission.events) +
      length(aws_lambda_permission.reconcile) +
      length(aws_lambda_function_event_invoke_config.dispatcher) +
      length(aws_cloudwatch_event_target.dispatcher) +
      length(aws_cloudwatch_event_rule.reconcile) +
      length(aws_cloudwatch_event_target.reconcile)
    ) == 0
    error_message = "Resources that invoke the dispatcher are planned although the function does not exist."
  }

  assert {
    condition     = length(aws_s3_bucket_notification.images) == 1 && length(aws_s3_bucket_notification.images[0].queue) == 1
    error_message = "Queued mode buffers uploads in SQS from the first apply on, before the function exists."
  }
}

run "once_the_function_exists_the_queue_feeds_it_reporting_batch_item_failures" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = {
      function_names = ["some-other-function", "image-labeler-dispatcher"]
    }
  }

  assert {
    condition     = aws_lambda_event_source_mapping.events[0].function_response_types == toset(["ReportBatchItemFailures"])
    error_message = "The SQS event source must report partial batch failures, or one bad message fails its whole batch."
  }

  assert {
    condition = (
      aws_lambda_event_source_mapping.events[0].function_name == "image-labeler-dispatcher" &&
      aws_lambda_event_source_mapping.events[0].batch_size == 100 &&
      aws_lambda_event_source_mapping.events[0].maximum_batching_window_in_seconds == 20 &&
      aws_lambda_event_source_mapping.events[0].scaling_config[0].maximum_concurrency == 10
    )
    error_message = "The event source mapping does not take the function, batch size, window and concurrency from the variables."
  }

  assert {
    condition     = aws_lambda_function_event_invoke_config.dispatcher[0].maximum_retry_attempts == 2 && length(aws_lambda_permission.events) == 1 && length(aws_cloudwatch_event_target.dispatcher) == 1
    error_message = "Batch job failure events must reach the function, with async retries then the dead-letter queue."
  }

  assert {
    condition     = length(aws_lambda_permission.s3) == 0
    error_message = "Queued mode must not let S3 invoke the function directly."
  }
}

run "once_the_function_exists_the_reconciler_runs_on_its_schedule_with_a_constant_input" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = {
      function_names = ["image-labeler-dispatcher"]
    }
  }

  variables {
    reconcile_schedule = "rate(10 minutes)"
  }

  assert {
    condition     = aws_cloudwatch_event_rule.reconcile[0].schedule_expression == "rate(10 minutes)"
    error_message = "The reconcile rule does not use reconcile_schedule."
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_target.reconcile[0].input) == { reconcile = {} }
    error_message = "The reconcile target must send {\"reconcile\": {}}, the input the dispatcher recognises."
  }

  assert {
    condition = (
      aws_cloudwatch_event_target.reconcile[0].arn == "arn:aws:lambda:us-east-1:123456789012:function:image-labeler-dispatcher" &&
      aws_lambda_permission.reconcile[0].principal == "events.amazonaws.com" &&
      aws_lambda_permission.reconcile[0].source_arn == aws_cloudwatch_event_rule.reconcile[0].arn
    )
    error_message = "The reconcile schedule must invoke the dispatcher, allowed for that rule only."
  }
}

run "a_function_deleted_by_hand_takes_its_wiring_with_it" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = {
      function_names = ["image-labeler-dispatcher-old", "x-image-labeler-dispatcher"]
    }
  }

  assert {
    condition = (
      length(aws_lambda_event_source_mapping.events) +
      length(aws_lambda_function_event_invoke_config.dispatcher) +
      length(aws_cloudwatch_event_rule.reconcile)
    ) == 0
    error_message = "Only a function of exactly the dispatcher's name counts as deployed."
  }
}

run "direct_mode_lets_s3_invoke_the_function_for_creations_removals_and_expirations" {
  command = plan

  override_data {
    target = data.aws_lambda_functions.all
    values = {
      function_names = ["image-labeler-dispatcher"]
    }
  }

  variables {
    trigger_mode = "direct"
  }

  assert {
    condition = (
      length(aws_sqs_queue.events) == 0 &&
      length(aws_lambda_event_source_mapping.events) == 0 &&
      length(aws_s3_bucket_notification.images[0].queue) == 0
    )
    error_message = "Direct mode must not create the events queue or its mapping."
  }

  assert {
    condition = alltrue([
      for n in aws_s3_bucket_notification.images[0].lambda_function :
      n.lambda_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:image-labeler-dispatcher" &&
      n.events == toset(["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"])
    ]) && length(aws_s3_bucket_notification.images[0].lambda_function) == 1
    error_message = "One notification of the whole bucket must notify the function of creations, removals and lifecycle expirations."
  }

  assert {
    condition     = aws_lambda_permission.s3[0].principal == "s3.amazonaws.com" && aws_lambda_permission.s3[0].source_arn == aws_s3_bucket.images.arn
    error_message = "S3 may invoke the function for the images bucket only."
  }
}

run "direct_mode_without_the_function_has_no_notification_to_a_missing_target" {
  command = plan

  variables {
    trigger_mode = "direct"
  }

  assert {
    condition     = length(aws_s3_bucket_notification.images) == 0 && length(aws_lambda_permission.s3) == 0
    error_message = "S3 refuses notifications to a function that does not exist."
  }
}

run "queued_notifications_cover_creations_removals_and_lifecycle_expirations" {
  command = plan

  assert {
    condition = alltrue([
      for n in aws_s3_bucket_notification.images[0].queue :
      n.queue_arn == aws_sqs_queue.events[0].arn &&
      n.events == toset(["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"])
    ])
    error_message = "Queued notifications must send creations, removals and lifecycle expirations to the events queue."
  }

  assert {
    condition = (
      length(aws_s3_bucket_notification.images[0].queue) == 1 &&
      aws_s3_bucket_notification.images[0].queue[0].filter_suffix == null &&
      aws_s3_bucket_notification.images[0].queue[0].filter_prefix == null
    )
    error_message = "Without image_prefixes, one unfiltered notification must cover the bucket: suffix filters are case-sensitive and would lose IMG_0001.Jpg."
  }

  assert {
    condition     = aws_sqs_queue.events[0].visibility_timeout_seconds == 6 * 120 + 20
    error_message = "The events queue's visibility timeout must cover six dispatcher timeouts plus the batching window."
  }
}

run "watched_prefixes_become_one_notification_each_and_the_dispatcher_s_include_list" {
  command = plan

  variables {
    image_prefixes = ["uploads/", "camera/"]
  }

  assert {
    condition = (
      toset(aws_s3_bucket_notification.images[0].queue[*].filter_prefix) == toset(["uploads/", "camera/"]) &&
      alltrue([for q in aws_s3_bucket_notification.images[0].queue : q.filter_suffix == null])
    )
    error_message = "Each watched prefix must be one notification, filtered by prefix only."
  }

  assert {
    condition     = local.dispatcher_env["INCLUDE_PREFIXES"] == "uploads/,camera/"
    error_message = "The dispatcher must accept exactly the prefixes S3 notifies for."
  }
}

run "overlapping_watched_prefixes_are_refused" {
  command = plan

  variables {
    image_prefixes = ["uploads/", "uploads/raw/"]
  }

  expect_failures = [var.image_prefixes]
}
