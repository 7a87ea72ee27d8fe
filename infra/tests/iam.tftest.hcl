# What each role's policy grants, statement by statement, on which resources.
# tests/tests/infra_contract.rs checks that the actions equal the SDK calls of
# each binary; these runs check the rendered statements and their resources
# in the planned configurations.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

run "the_dispatcher_role_grants_its_calls_on_the_stack_resources_in_queued_mode" {
  command = plan

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.dispatcher.statement : s.sid => [sort(s.actions), sort(s.resources)]
      }) == jsonencode({
      SubmitLabelingJobs = [["batch:SubmitJob"], sort([
        "arn:aws:batch:us-east-1:123456789012:job-queue/image-labeler-jobs",
        "arn:aws:batch:us-east-1:123456789012:job-definition/image-labeler-worker",
        "arn:aws:batch:us-east-1:123456789012:job-definition/image-labeler-worker:*",
      ])]
      ResultsTable = [
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        ["arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels"],
      ]
      ResultsIndexes    = [["dynamodb:Query"], ["arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels/index/*"]]
      TrackJobs         = [["batch:DescribeJobs", "batch:ListJobs"], ["*"]]
      Manifests         = [["s3:GetObject", "s3:PutObject"], ["arn:aws:s3:::image-labeler-images-123456789012-us-east-1/labeler-manifests/*"]]
      CurrentVersions   = [["s3:GetObject"], ["arn:aws:s3:::image-labeler-images-123456789012-us-east-1/*"]]
      Logs              = [["logs:CreateLogStream", "logs:PutLogEvents"], ["arn:aws:logs:us-east-1:123456789012:log-group:/aws/image-labeler:*"]]
      FailedInvocations = [["sqs:SendMessage"], ["arn:aws:sqs:us-east-1:123456789012:image-labeler-queue"]]
      PollEvents = [
        ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
        ["arn:aws:sqs:us-east-1:123456789012:image-labeler-queue"],
      ]
    })
    error_message = "The dispatcher's statements or their resources changed."
  }

  assert {
    condition     = aws_iam_role_policy.dispatcher.role == aws_iam_role.dispatcher.id && aws_iam_role.dispatcher.name == "image-labeler-us-east-1-dispatcher"
    error_message = "The dispatcher policy must be attached to the role cargo lambda deploy is given."
  }
}

run "the_dispatcher_role_polls_no_queue_in_direct_mode" {
  command = plan

  variables {
    trigger_mode = "direct"
  }

  assert {
    condition     = !contains([for s in data.aws_iam_policy_document.dispatcher.statement : s.sid], "PollEvents")
    error_message = "Direct mode has no events queue to poll."
  }
}

run "the_worker_job_role_reads_images_labels_them_and_writes_results" {
  command = plan

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.job.statement : s.sid => [sort(s.actions), sort(s.resources)]
      }) == jsonencode({
      ReadImagesAndManifests = [["s3:GetObject", "s3:GetObjectVersion"], ["arn:aws:s3:::image-labeler-images-123456789012-us-east-1/*"]]
      DetectLabels           = [["rekognition:DetectLabels"], ["*"]]
      ResultsTable = [
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        ["arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels"],
      ]
    })
    error_message = "The worker job role's statements or their resources changed."
  }

  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.ecs_tasks_assume.statement :
      [for p in s.principals : p.identifiers] == [toset(["ecs-tasks.amazonaws.com"])] &&
      contains([for c in s.condition : c.variable], "aws:SourceAccount")
    ])
    error_message = "Only ECS tasks of this account may assume the worker's roles."
  }
}

run "the_execution_role_pulls_the_worker_image_and_writes_its_logs_only" {
  command = plan

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.execution.statement : s.sid => [sort(s.actions), sort(s.resources)]
      }) == jsonencode({
      PullWorkerImage = [["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], ["arn:aws:ecr:us-east-1:123456789012:repository/image-labeler-worker"]]
      RegistryLogin   = [["ecr:GetAuthorizationToken"], ["*"]]
      Logs            = [["logs:CreateLogStream", "logs:PutLogEvents"], ["arn:aws:logs:us-east-1:123456789012:log-group:/aws/image-labeler:*"]]
    })
    error_message = "The execution role's statements or their resources changed."
  }
}

run "only_ec2_compute_has_an_instance_role_and_only_a_created_vpc_has_flow_logs" {
  command = plan

  variables {
    compute_type = "SPOT"
  }

  assert {
    condition     = length(aws_iam_role.ecs_instance) == 1 && aws_iam_role_policy_attachment.ecs_instance[0].policy_arn == "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
    error_message = "EC2/SPOT instances need the ECS container instance role."
  }

  assert {
    condition     = length(aws_iam_role.flow_logs) == 1 && aws_flow_log.this[0].traffic_type == "REJECT"
    error_message = "The created VPC logs rejected traffic."
  }
}

run "fargate_in_own_subnets_has_neither_instance_nor_flow_log_roles" {
  command = plan

  variables {
    create_vpc = false
    subnet_ids = ["subnet-0aaa"]
  }

  assert {
    condition     = length(aws_iam_role.ecs_instance) == 0 && length(aws_iam_role.flow_logs) == 0
    error_message = "Fargate in your own subnets needs no instance role and gets no flow logs."
  }
}

run "the_viewer_policy_reads_results_and_images_and_writes_nothing" {
  command = plan

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.viewer.statement : s.sid => [sort(s.actions), sort(s.resources)]
      }) == jsonencode({
      ReadResults = [
        ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"],
        sort([
          "arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels",
          "arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels/index/*",
        ]),
      ]
      OpenImages = [
        ["s3:GetObject", "s3:GetObjectVersion"],
        ["arn:aws:s3:::image-labeler-images-123456789012-us-east-1/*"],
      ]
    })
    error_message = "The viewer policy's statements or their resources changed."
  }

  assert {
    condition     = aws_iam_policy.viewer.name == "image-labeler-us-east-1-viewer"
    error_message = "The viewer policy is named after the stack and its region."
  }
}
