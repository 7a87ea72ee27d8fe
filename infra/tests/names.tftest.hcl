# Names AWS keeps account-wide (IAM roles and policies, CloudWatch
# dashboards) carry the region, so the same name_prefix deployed in two
# regions neither collides nor overwrites the other stack's.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

variables {
  create_vpc   = true
  compute_type = "SPOT"
}

run "a_stack_in_us_east_1_names_its_account_wide_resources_with_its_region" {
  command = plan

  variables {
    region = "us-east-1"
  }

  assert {
    condition = [
      aws_iam_role.dispatcher.name,
      aws_iam_role.job.name,
      aws_iam_role.execution.name,
      aws_iam_role.flow_logs[0].name,
      aws_iam_policy.viewer.name,
      aws_cloudwatch_dashboard.pipeline.dashboard_name,
      ] == [
      "image-labeler-us-east-1-dispatcher",
      "image-labeler-us-east-1-worker-job",
      "image-labeler-us-east-1-worker-execution",
      "image-labeler-us-east-1-flow-logs",
      "image-labeler-us-east-1-viewer",
      "image-labeler-us-east-1-pipeline",
    ]
    error_message = "IAM roles, the viewer policy and the dashboard must be named <name_prefix>-<region>-..."
  }
}

run "the_same_name_prefix_in_eu_west_1_gets_names_that_differ_from_us_east_1" {
  command = plan

  variables {
    region = "eu-west-1"
  }

  assert {
    condition = length(setintersection(
      toset([
        aws_iam_role.dispatcher.name,
        aws_iam_role.job.name,
        aws_iam_role.execution.name,
        aws_iam_role.flow_logs[0].name,
        aws_iam_policy.viewer.name,
        aws_cloudwatch_dashboard.pipeline.dashboard_name,
      ]),
      toset([
        "image-labeler-us-east-1-dispatcher",
        "image-labeler-us-east-1-worker-job",
        "image-labeler-us-east-1-worker-execution",
        "image-labeler-us-east-1-flow-logs",
        "image-labeler-us-east-1-viewer",
        "image-labeler-us-east-1-pipeline",
      ]),
    )) == 0 && output.dashboard_name != run.a_stack_in_us_east_1_names_its_account_wide_resources_with_its_region.dashboard_name
    error_message = "No account-wide name of the eu-west-1 stack may equal one of the us-east-1 stack of the same name_prefix."
  }

  assert {
    condition     = aws_iam_role.dispatcher.name == "image-labeler-eu-west-1-dispatcher" && aws_iam_policy.viewer.name == "image-labeler-eu-west-1-viewer"
    error_message = "The eu-west-1 stack's names must carry eu-west-1."
  }
}

run "instance_roles_get_unique_names_of_their_own" {
  command = plan

  assert {
    condition     = aws_iam_role.ecs_instance[0].name_prefix == "image-labeler-instance-" && aws_iam_instance_profile.ecs_instance[0].name_prefix == "image-labeler-instance-"
    error_message = "The instance role and profile use IAM's unique name_prefix suffix, within its 38 characters."
  }
}

run "a_name_prefix_and_region_whose_role_names_exceed_64_characters_are_refused" {
  command = plan

  variables {
    name_prefix = "a-very-long-stack-prefix"
    region      = "xx-abcdefghijklmnopqrs-1"
  }

  expect_failures = [var.region]
}

run "the_longest_name_prefix_fits_in_every_current_region_name" {
  command = plan

  variables {
    name_prefix = "a-very-long-stack-prefix"
    region      = "ap-southeast-2"
  }

  override_data {
    target = data.aws_ssm_parameters_by_path.rekognition_regions
    values = { names = ["/aws/service/global-infrastructure/services/rekognition/regions/ap-southeast-2"] }
  }

  assert {
    condition     = length(aws_iam_role.execution.name) <= 64 && aws_iam_role.execution.name == "a-very-long-stack-prefix-ap-southeast-2-worker-execution"
    error_message = "A 24-character name_prefix in a 14-character region must fit IAM's 64 characters."
  }
}
