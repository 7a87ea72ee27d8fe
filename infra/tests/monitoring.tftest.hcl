# The dashboard shows every metric the dispatcher and the worker emit, for
# the stack's own table, next to the AWS metrics of the queue and function
# it watches; the alarms watch what their descriptions say and notify the
# topic that was asked for, or no one.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

override_resource {
  target          = aws_cloudwatch_metric_alarm.dead_letters
  override_during = plan
  values          = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-dead-letters" }
}

override_resource {
  target          = aws_cloudwatch_metric_alarm.backlog_age
  override_during = plan
  values          = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-backlog-age" }
}

override_resource {
  target          = aws_cloudwatch_metric_alarm.failed_rate
  override_during = plan
  values          = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-failed-rate" }
}

override_resource {
  target          = aws_cloudwatch_metric_alarm.dispatcher_errors
  override_during = plan
  values          = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-dispatcher-errors" }
}

variables {
  worker_image_tag = "0123456789ab"
}

run "the_dashboard_shows_every_pipeline_metric_for_the_stacks_table" {
  command = plan

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : m[1] if m[0] == "ImageLabeler"
      ] if w.type == "metric"
      ])) == toset([
      "ImagesQueued", "ImagesSkipped", "Duplicates", "ImagesRemoved", "JobsSubmitted",
      "ArrayChildrenSubmitted", "SubmitJobThrottles", "SubmitJobRetries", "DeliveriesFailed",
      "ImagesFailedByBatch", "ImagesFailedToSubmit", "InvocationDuration",
      "OldestQueuedAgeSeconds", "ReconcileRedispatched", "ReconcileFailed",
      "ImagesLabeled", "ImagesReused", "ImagesFailed", "ImagesAlreadyDone", "ImagesSuperseded",
      "ImagesLeftQueued", "DetectLabelsCalls", "DetectLabelsThrottles", "WriteConflicts",
      "DetectLabelsLatency", "ChunkDuration", "RateLimit",
    ])
    error_message = "The dashboard must graph exactly the metrics the dispatcher and the worker emit."
  }

  assert {
    condition = alltrue(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : m[2] == "Table" && m[3] == "image-labeler-labels" if m[0] == "ImageLabeler"
      ] if w.type == "metric"
    ]))
    error_message = "Every ImageLabeler metric on the dashboard must be the one of this stack's results table."
  }

  assert {
    condition = alltrue([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets :
      w.properties.region == "us-east-1" && w.width > 0 && w.height > 0 if w.type == "metric"
    ])
    error_message = "Every metric widget needs the stack's region and a size."
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : m[5] if m[0] == "ImageLabeler" && m[1] == "ImagesFailed"
      ] if w.type == "metric"
    ])) == toset(["not_an_image", "too_large", "unreadable", "rekognition_refused", "access_denied", "other"])
    error_message = "Failures must be graphed by each of the six reason classes."
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : m[1] if m[0] == "ImageLabeler"
      ] if w.type == "metric" && w.properties.title == "FAILED images by reason class"
    ])) == toset(["ImagesFailed", "ImagesFailedByBatch", "ImagesFailedToSubmit"])
    error_message = "The failures widget must add the images of failed Batch jobs and of failed submissions."
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : m[4].stat if m[1] == "DetectLabelsLatency"
      ] if w.type == "metric"
    ])) == toset(["p50", "p90", "p99"])
    error_message = "DetectLabels latency must be shown as p50, p90 and p99."
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : [
        for m in w.properties.metrics : join(" ", [m[0], m[1], m[2], m[3]]) if m[0] != "ImageLabeler"
      ] if w.type == "metric"
      ])) == toset([
      "AWS/SQS ApproximateNumberOfMessagesVisible QueueName image-labeler-dispatch-failures",
      "AWS/Lambda Errors FunctionName image-labeler-dispatcher",
      "AWS/Lambda Throttles FunctionName image-labeler-dispatcher",
      "AWS/Lambda Duration FunctionName image-labeler-dispatcher",
    ])
    error_message = "The AWS metrics on the dashboard must be the dead-letter queue's depth and the dispatcher's errors, throttles and duration."
  }

  assert {
    condition = [
      for w in jsondecode(aws_cloudwatch_dashboard.pipeline.dashboard_body).widgets : w.properties.alarms if w.type == "alarm"
      ] == [[
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-dead-letters",
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-backlog-age",
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-failed-rate",
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:image-labeler-dispatcher-errors",
    ]]
    error_message = "The dashboard must open with the state of the four alarms."
  }

  assert {
    condition     = output.dashboard_name == "image-labeler-us-east-1-pipeline" && output.dashboard_url == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/image-labeler-us-east-1-pipeline"
    error_message = "The dashboard outputs must name it and link to it in the stack's region."
  }
}

run "the_alarms_watch_the_dead_letters_the_backlog_the_failures_and_the_dispatcher" {
  command = plan

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.dead_letters.namespace == "AWS/SQS" &&
      aws_cloudwatch_metric_alarm.dead_letters.metric_name == "ApproximateNumberOfMessagesVisible" &&
      aws_cloudwatch_metric_alarm.dead_letters.dimensions["QueueName"] == "image-labeler-dispatch-failures" && length(aws_cloudwatch_metric_alarm.dead_letters.dimensions) == 1 &&
      aws_cloudwatch_metric_alarm.dead_letters.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.dead_letters.threshold == 0 &&
      aws_cloudwatch_metric_alarm.dead_letters.treat_missing_data == "ignore"
    )
    error_message = "The dead-letter alarm must fire on any message in the dead-letter queue and hold while SQS reports nothing."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backlog_age.namespace == "ImageLabeler" &&
      aws_cloudwatch_metric_alarm.backlog_age.metric_name == "OldestQueuedAgeSeconds" &&
      aws_cloudwatch_metric_alarm.backlog_age.dimensions["Table"] == "image-labeler-labels" && length(aws_cloudwatch_metric_alarm.backlog_age.dimensions) == 1 &&
      aws_cloudwatch_metric_alarm.backlog_age.statistic == "Maximum" &&
      aws_cloudwatch_metric_alarm.backlog_age.threshold == 3600 &&
      aws_cloudwatch_metric_alarm.backlog_age.period == 300 &&
      aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.backlog_age.datapoints_to_alarm == 2 &&
      aws_cloudwatch_metric_alarm.backlog_age.treat_missing_data == "breaching"
    )
    error_message = "The backlog alarm must fire when the oldest QUEUED image passes an hour, or when two 5-minute reconciler passes report nothing."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.dispatcher_errors.namespace == "AWS/Lambda" &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.metric_name == "Errors" &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.dimensions["FunctionName"] == "image-labeler-dispatcher" && length(aws_cloudwatch_metric_alarm.dispatcher_errors.dimensions) == 1 &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.statistic == "Sum" &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.threshold == 0 &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.comparison_operator == "GreaterThanThreshold"
    )
    error_message = "The dispatcher alarm must fire on any Lambda error of the dispatcher function."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.failed_rate.threshold == 5 &&
      aws_cloudwatch_metric_alarm.failed_rate.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.failed_rate.treat_missing_data == "notBreaching" &&
      aws_cloudwatch_metric_alarm.failed_rate.metric_name == null
    )
    error_message = "The failure-rate alarm must compare a metric-math percentage with failed_rate_alarm_percent."
  }

  assert {
    condition = {
      for q in aws_cloudwatch_metric_alarm.failed_rate.metric_query :
      q.id => [q.metric[0].namespace, q.metric[0].metric_name, q.metric[0].dimensions["Table"], q.metric[0].stat, tostring(q.metric[0].period)]
      if length(q.metric) > 0
      } == {
      failed           = ["ImageLabeler", "ImagesFailed", "image-labeler-labels", "Sum", "900"]
      failed_by_batch  = ["ImageLabeler", "ImagesFailedByBatch", "image-labeler-labels", "Sum", "900"]
      failed_to_submit = ["ImageLabeler", "ImagesFailedToSubmit", "image-labeler-labels", "Sum", "900"]
      reconcile_failed = ["ImageLabeler", "ReconcileFailed", "image-labeler-labels", "Sum", "900"]
      labeled          = ["ImageLabeler", "ImagesLabeled", "image-labeler-labels", "Sum", "900"]
    }
    error_message = "The failure rate must sum the four kinds of failure (the reconciler's included) and the labeled images of the stack's table over 15 minutes."
  }

  assert {
    condition = [
      for q in aws_cloudwatch_metric_alarm.failed_rate.metric_query : q.expression if q.return_data
    ] == ["IF(failures + FILL(labeled, 0) > 0, 100 * failures / (failures + FILL(labeled, 0)), 0)"]
    error_message = "The alarm must watch the percentage, guarded against 15 minutes in which nothing finished."
  }

  assert {
    condition = [
      for q in aws_cloudwatch_metric_alarm.failed_rate.metric_query : q.expression if q.id == "failures"
    ] == ["FILL(failed, 0) + FILL(failed_by_batch, 0) + FILL(failed_to_submit, 0) + FILL(reconcile_failed, 0)"]
    error_message = "Failures are the worker's, the failed jobs', the failed submissions' and the reconciler's FAILED images."
  }

  assert {
    condition = alltrue([
      for a in [
        aws_cloudwatch_metric_alarm.dead_letters,
        aws_cloudwatch_metric_alarm.backlog_age,
        aws_cloudwatch_metric_alarm.failed_rate,
        aws_cloudwatch_metric_alarm.dispatcher_errors,
      ] : length(a.alarm_description) >= 200 && length(a.alarm_description) <= 1024 && startswith(a.alarm_name, "image-labeler-")
    ])
    error_message = "Every alarm needs a description telling the on-call what to do, within CloudWatch's 1024 characters, and a name the topic policy's image-labeler-* pattern covers."
  }

  assert {
    condition     = strcontains(aws_cloudwatch_metric_alarm.dead_letters.alarm_description, "image-labeler-dispatch-failures") && strcontains(aws_cloudwatch_metric_alarm.dispatcher_errors.alarm_description, "/aws/lambda/image-labeler-dispatcher")
    error_message = "Descriptions must name the queue and the log group to look at."
  }
}

run "a_slower_reconcile_schedule_widens_the_backlog_alarm_periods" {
  command = plan

  variables {
    reconcile_schedule    = "rate(20 minutes)"
    backlog_alarm_seconds = 7200
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_age.period == 1200 && aws_cloudwatch_metric_alarm.backlog_age.threshold == 7200
    error_message = "Each backlog alarm period must span one reconciler pass, and the threshold is backlog_alarm_seconds."
  }
}

run "a_cron_reconcile_schedule_is_taken_as_hourly_for_the_backlog_alarm" {
  command = plan

  variables {
    reconcile_schedule = "cron(0/10 * * * ? *)"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_age.period == 3600
    error_message = "A cron() schedule must give hourly backlog alarm periods."
  }
}

run "a_daily_reconcile_schedule_is_evaluated_over_two_daily_periods" {
  command = plan

  variables {
    reconcile_schedule = "rate(1 day)"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backlog_age.period == 86400 &&
      aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.backlog_age.datapoints_to_alarm == 2
    )
    error_message = "A daily reconciler needs two daily periods, all breaching, before the alarm fires."
  }
}

run "a_three_day_reconcile_schedule_is_evaluated_over_six_daily_periods_within_cloudwatchs_seven_days" {
  command = plan

  variables {
    reconcile_schedule = "rate(3 days)"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backlog_age.period == 86400 &&
      aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods == 6 &&
      aws_cloudwatch_metric_alarm.backlog_age.datapoints_to_alarm == 6 &&
      aws_cloudwatch_metric_alarm.backlog_age.period * aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods <= 604800
    )
    error_message = "The alarm must span two 3-day passes in daily periods, within CloudWatch's 7 days."
  }
}

run "an_hourly_schedule_of_seven_hours_spans_two_passes" {
  command = plan

  variables {
    reconcile_schedule    = "rate(7 hours)"
    backlog_alarm_seconds = 86400
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backlog_age.period * aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods >= 2 * 7 * 3600 &&
      aws_cloudwatch_metric_alarm.backlog_age.datapoints_to_alarm == aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods
    )
    error_message = "The backlog alarm's window must cover two reconciler periods, every one of them breaching."
  }
}

run "the_slowest_schedule_the_backlog_alarm_can_follow_is_accepted" {
  command = plan

  variables {
    reconcile_schedule = "rate(84 hours)"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_age.period * aws_cloudwatch_metric_alarm.backlog_age.evaluation_periods == 604800
    error_message = "rate(84 hours) is two passes in exactly CloudWatch's 7 days."
  }
}

run "a_reconcile_schedule_of_four_days_is_refused_as_slower_than_the_backlog_alarm_can_follow" {
  command = plan

  variables {
    reconcile_schedule = "rate(4 days)"
  }

  expect_failures = [var.reconcile_schedule]
}

run "a_reconcile_schedule_of_85_hours_is_refused_as_slower_than_the_backlog_alarm_can_follow" {
  command = plan

  variables {
    reconcile_schedule = "rate(85 hours)"
  }

  expect_failures = [var.reconcile_schedule]
}

run "a_daily_cron_schedule_is_refused_because_the_backlog_alarm_cannot_know_its_gaps" {
  command = plan

  variables {
    reconcile_schedule = "cron(0 3 * * ? *)"
  }

  expect_failures = [var.reconcile_schedule]
}

run "before_the_dispatcher_exists_the_backlog_alarm_notifies_no_one" {
  command = plan

  variables {
    alarm_email = "oncall@example.com"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backlog_age.actions_enabled == false &&
      aws_cloudwatch_metric_alarm.dead_letters.actions_enabled != false &&
      aws_cloudwatch_metric_alarm.failed_rate.actions_enabled != false &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.actions_enabled != false
    )
    error_message = "Without the dispatcher no reconciler pass can run: the backlog alarm must not page for that, and the other alarms keep notifying."
  }
}

run "once_the_dispatcher_exists_the_backlog_alarm_notifies" {
  command = plan

  variables {
    alarm_email = "oncall@example.com"
  }

  override_data {
    target = data.aws_lambda_functions.all
    values = { function_names = ["image-labeler-dispatcher"] }
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_age.actions_enabled && aws_cloudwatch_metric_alarm.backlog_age.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:image-labeler-alarms"])
    error_message = "With the dispatcher deployed, the backlog alarm must notify the topic."
  }
}

run "without_a_topic_the_alarms_notify_no_one" {
  command = plan

  assert {
    condition = (
      length(aws_sns_topic.alarms) + length(aws_sns_topic_subscription.alarm_email) + length(aws_sns_topic_policy.alarms) == 0 &&
      alltrue([
        for a in [
          aws_cloudwatch_metric_alarm.dead_letters,
          aws_cloudwatch_metric_alarm.backlog_age,
          aws_cloudwatch_metric_alarm.failed_rate,
          aws_cloudwatch_metric_alarm.dispatcher_errors,
        ] : length(a.alarm_actions) == 0 && length(a.ok_actions) == 0
      ]) &&
      output.alarm_topic_arn == null
    )
    error_message = "With neither alarm_email nor alarm_topic_arn, no topic is created and no alarm has actions."
  }
}

run "an_alarm_email_gets_a_topic_that_every_alarm_notifies" {
  command = plan

  variables {
    alarm_email = "oncall@example.com"
  }

  assert {
    condition     = aws_sns_topic_subscription.alarm_email[0].protocol == "email" && aws_sns_topic_subscription.alarm_email[0].endpoint == "oncall@example.com" && aws_sns_topic_subscription.alarm_email[0].topic_arn == aws_sns_topic.alarms[0].arn
    error_message = "The address must be subscribed to the created topic by email."
  }

  assert {
    condition = alltrue([
      for a in [
        aws_cloudwatch_metric_alarm.dead_letters,
        aws_cloudwatch_metric_alarm.backlog_age,
        aws_cloudwatch_metric_alarm.failed_rate,
        aws_cloudwatch_metric_alarm.dispatcher_errors,
      ] : a.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:image-labeler-alarms"]) && a.ok_actions == a.alarm_actions
    ])
    error_message = "Every alarm must notify the created topic when it fires and when it clears."
  }

  assert {
    condition     = aws_sns_topic.alarms[0].name == "image-labeler-alarms" && aws_sns_topic_policy.alarms[0].arn == aws_sns_topic.alarms[0].arn && output.alarm_topic_arn == aws_sns_topic.alarms[0].arn
    error_message = "The created topic must carry the policy that lets the stack's alarms publish, and be the alarm_topic_arn output."
  }
}

run "an_existing_topic_is_notified_and_none_is_created" {
  command = plan

  variables {
    alarm_topic_arn = "arn:aws:sns:us-east-1:123456789012:team-pager"
  }

  assert {
    condition = length(aws_sns_topic.alarms) == 0 && alltrue([
      for a in [
        aws_cloudwatch_metric_alarm.dead_letters,
        aws_cloudwatch_metric_alarm.backlog_age,
        aws_cloudwatch_metric_alarm.failed_rate,
        aws_cloudwatch_metric_alarm.dispatcher_errors,
      ] : a.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:team-pager"]) && a.ok_actions == a.alarm_actions
    ]) && output.alarm_topic_arn == "arn:aws:sns:us-east-1:123456789012:team-pager"
    error_message = "With alarm_topic_arn, every alarm notifies that topic and none is created."
  }
}

run "the_failure_rate_threshold_is_the_variable" {
  command = plan

  variables {
    failed_rate_alarm_percent = 12.5
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.failed_rate.threshold == 12.5
    error_message = "The failure-rate alarm must use failed_rate_alarm_percent."
  }
}

run "the_failure_rate_counts_the_images_the_reconciler_recorded_failed" {
  command = plan

  assert {
    condition = length([
      for q in aws_cloudwatch_metric_alarm.failed_rate.metric_query : q.id
      if length(q.metric) > 0 && try(q.metric[0].metric_name, "") == "ReconcileFailed"
      ]) == 1 && alltrue([
      for q in aws_cloudwatch_metric_alarm.failed_rate.metric_query :
      strcontains(q.expression, "reconcile_failed") if q.id == "failures"
    ])
    error_message = "The failure rate must read ReconcileFailed and add it to the failures."
  }
}

run "one_failed_event_and_its_retries_do_not_page_only_errors_sustained_for_fifteen_minutes_do" {
  command = plan

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.dispatcher_errors.period == 300 &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.evaluation_periods == 3 &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.datapoints_to_alarm == 3 &&
      aws_cloudwatch_metric_alarm.dispatcher_errors.treat_missing_data == "notBreaching"
    )
    error_message = "The dispatcher alarm must need errors in three 5-minute periods in a row: one event's async retries (about 3 minutes) or SQS redeliveries (a visibility timeout apart) cannot fill them."
  }
}

run "the_dead_letter_runbook_replays_only_what_can_be_replayed_and_never_a_move_task" {
  command = plan

  assert {
    condition = (
      !strcontains(aws_cloudwatch_metric_alarm.dead_letters.alarm_description, "move-task") &&
      strcontains(aws_cloudwatch_metric_alarm.dead_letters.alarm_description, "labeler reconcile") &&
      strcontains(aws_cloudwatch_metric_alarm.dead_letters.alarm_description, "labeler backfill s3://") &&
      strcontains(aws_cloudwatch_metric_alarm.dead_letters.alarm_description, "aws sqs purge-queue --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/image-labeler-queue")
    )
    error_message = "Reconciler ticks and Batch events in the dead-letter queue have no source queue: the runbook must re-run the reconciler or backfill, then purge, never start a message move task."
  }
}
