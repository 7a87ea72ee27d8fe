# Values the mocked AWS provider returns instead of random strings, where the
# configuration or the provider's own validation needs a realistic shape.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:user/deployer"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

# No dispatcher function yet: a first deploy. Runs that need it override
# data.aws_lambda_functions.all.
mock_data "aws_lambda_functions" {
  defaults = {
    function_names = []
    function_arns  = []
  }
}

# Regions that offer Rekognition (a sample of AWS's public parameters under
# this path); runs about other regions override it.
mock_data "aws_ssm_parameters_by_path" {
  defaults = {
    names = [
      "/aws/service/global-infrastructure/services/rekognition/regions/ap-northeast-1",
      "/aws/service/global-infrastructure/services/rekognition/regions/ap-south-1",
      "/aws/service/global-infrastructure/services/rekognition/regions/eu-central-1",
      "/aws/service/global-infrastructure/services/rekognition/regions/eu-west-1",
      "/aws/service/global-infrastructure/services/rekognition/regions/us-east-1",
      "/aws/service/global-infrastructure/services/rekognition/regions/us-east-2",
      "/aws/service/global-infrastructure/services/rekognition/regions/us-west-2",
    ]
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    names    = ["us-east-1a", "us-east-1b", "us-east-1c"]
    zone_ids = ["use1-az1", "use1-az2", "use1-az4"]
  }
}

mock_data "aws_vpc_endpoint_service" {
  defaults = {
    availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    service_name       = "com.amazonaws.us-east-1.service"
  }
}

mock_data "aws_vpc" {
  defaults = {
    id = "vpc-0defa017"
  }
}

mock_data "aws_subnets" {
  defaults = {
    ids = []
  }
}

mock_data "aws_subnet" {
  defaults = {
    vpc_id                  = "vpc-0a11ce00"
    availability_zone       = "us-east-1a"
    map_public_ip_on_launch = false
  }
}

mock_data "aws_route_tables" {
  defaults = {
    ids = ["rtb-0a11ce00"]
  }
}

mock_resource "aws_s3_bucket" {
  defaults = {
    arn = "arn:aws:s3:::image-labeler-images-123456789012-us-east-1"
  }
}

mock_resource "aws_sqs_queue" {
  defaults = {
    arn = "arn:aws:sqs:us-east-1:123456789012:image-labeler-queue"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/image-labeler-queue"
  }
}

mock_resource "aws_dynamodb_table" {
  defaults = {
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/image-labeler-labels"
  }
}

mock_resource "aws_batch_job_queue" {
  defaults = {
    arn = "arn:aws:batch:us-east-1:123456789012:job-queue/image-labeler-jobs"
  }
}

mock_resource "aws_batch_compute_environment" {
  defaults = {
    arn = "arn:aws:batch:us-east-1:123456789012:compute-environment/image-labeler"
  }
}

mock_resource "aws_batch_job_definition" {
  defaults = {
    arn = "arn:aws:batch:us-east-1:123456789012:job-definition/image-labeler-worker:1"
  }
}

mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:us-east-1:123456789012:repository/image-labeler-worker"
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-labeler-worker"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/image-labeler-role"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::123456789012:instance-profile/image-labeler-instance"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/image-labeler"
  }
}

mock_resource "aws_cloudwatch_event_rule" {
  defaults = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/image-labeler-rule"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:us-east-1:123456789012:image-labeler-alarms"
  }
}

mock_resource "aws_vpc" {
  defaults = {
    id = "vpc-0c0ffee0"
  }
}

# Identifiers stay unknown during a mocked plan unless given; these make the
# subnets and security groups distinguishable in assertions.
override_resource {
  target          = aws_subnet.private[0]
  override_during = plan
  values          = { id = "subnet-0pr1va7e0" }
}

override_resource {
  target          = aws_subnet.private[1]
  override_during = plan
  values          = { id = "subnet-0pr1va7e1" }
}

override_resource {
  target          = aws_subnet.private[2]
  override_during = plan
  values          = { id = "subnet-0pr1va7e2" }
}

override_resource {
  target          = aws_security_group.worker
  override_during = plan
  values          = { id = "sg-0w0rker" }
}

override_resource {
  target          = aws_security_group.endpoints[0]
  override_during = plan
  values          = { id = "sg-0endp0ints" }
}
