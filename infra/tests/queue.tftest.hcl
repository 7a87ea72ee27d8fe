# The job queue lists its compute environments in ascending `order`, the way
# Batch returns them, for every compute setting: blocks in any other order
# would show a diff on every plan after a refresh.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

# Distinct ARNs, so that the queue's entries can be told apart.
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

run "fargate_spot_with_the_on_demand_fallback_lists_spot_first_and_fargate_second_in_order" {
  command = plan

  variables {
    compute_type               = "FARGATE_SPOT"
    fargate_on_demand_fallback = true
  }

  assert {
    condition = jsonencode([
      for o in aws_batch_job_queue.this.compute_environment_order : [o.order, o.compute_environment]
      ]) == jsonencode([
      [1, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate-spot"],
      [2, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate"],
    ])
    error_message = "The queue's environments must be listed by ascending order: Fargate Spot (1), then on-demand Fargate (2)."
  }
}

run "fargate_spot_without_the_fallback_lists_its_one_environment_as_order_one" {
  command = plan

  variables {
    compute_type               = "FARGATE_SPOT"
    fargate_on_demand_fallback = false
  }

  assert {
    condition = jsonencode([
      for o in aws_batch_job_queue.this.compute_environment_order : [o.order, o.compute_environment]
    ]) == jsonencode([[1, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate-spot"]])
    error_message = "Fargate Spot alone must be the queue's only environment, order 1."
  }
}

run "on_demand_fargate_lists_its_one_environment_as_order_one" {
  command = plan

  variables {
    compute_type = "FARGATE"
  }

  assert {
    condition = jsonencode([
      for o in aws_batch_job_queue.this.compute_environment_order : [o.order, o.compute_environment]
    ]) == jsonencode([[1, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-fargate"]])
    error_message = "FARGATE must be the queue's only environment, order 1."
  }
}

run "ec2_lists_its_one_environment_as_order_one" {
  command = plan

  variables {
    compute_type = "EC2"
  }

  assert {
    condition = jsonencode([
      for o in aws_batch_job_queue.this.compute_environment_order : [o.order, o.compute_environment]
    ]) == jsonencode([[1, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-ec2"]])
    error_message = "EC2 must be the queue's only environment, order 1."
  }
}

run "spot_instances_list_their_one_environment_as_order_one" {
  command = plan

  variables {
    compute_type = "SPOT"
  }

  assert {
    condition = jsonencode([
      for o in aws_batch_job_queue.this.compute_environment_order : [o.order, o.compute_environment]
    ]) == jsonencode([[1, "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler-spot"]])
    error_message = "SPOT must be the queue's only environment, order 1."
  }
}
