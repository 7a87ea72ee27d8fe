# The worker's network: a VPC of its own by default, your subnets, or the
# default VPC; endpoints only in availability zones that offer them; and the
# combinations in which no job could ever reach AWS refused at plan time.

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

run "the_default_creates_a_private_vpc_with_every_endpoint_the_worker_needs" {
  command = plan

  assert {
    condition = (
      length(aws_vpc.this) == 1 &&
      [for s in aws_subnet.private : s.availability_zone] == ["us-east-1a", "us-east-1b"] &&
      [for s in aws_subnet.private : s.cidr_block] == ["10.42.0.0/20", "10.42.16.0/20"] &&
      alltrue([for s in aws_subnet.private : !s.map_public_ip_on_launch])
    )
    error_message = "The default network is a created VPC with two private /20 subnets in two availability zones."
  }

  assert {
    condition     = length(data.aws_vpc.default) == 0 && length(data.aws_subnets.default) == 0
    error_message = "The default must not touch the account's default VPC."
  }

  assert {
    condition = (
      toset(keys(aws_vpc_endpoint.gateway)) == toset(["s3", "dynamodb"]) &&
      toset(keys(aws_vpc_endpoint.interface)) == toset(["ecr.api", "ecr.dkr", "logs", "rekognition"]) &&
      alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && e.subnet_ids == toset(["subnet-0pr1va7e0", "subnet-0pr1va7e1"])])
    )
    error_message = "The created VPC needs S3 and DynamoDB gateways and private-DNS interface endpoints in both subnets."
  }

  assert {
    condition = (
      [for r in aws_security_group.endpoints[0].ingress : [r.from_port, r.to_port, r.protocol]] == [[443, 443, "tcp"]] &&
      [for r in aws_security_group.endpoints[0].ingress : r.security_groups] == [toset(["sg-0w0rker"])] &&
      [for r in aws_security_group.endpoints[0].ingress : length(coalesce(r.cidr_blocks, []))] == [0]
    )
    error_message = "The interface endpoints must accept HTTPS from the worker's security group only."
  }

  assert {
    condition     = [for e in aws_security_group.worker.egress : [e.from_port, e.to_port, e.protocol]] == [[443, 443, "tcp"]]
    error_message = "The worker sends only HTTPS."
  }

  assert {
    condition     = aws_batch_compute_environment.this["FARGATE_SPOT"].compute_resources[0].subnets == toset(["subnet-0pr1va7e0", "subnet-0pr1va7e1"]) && aws_batch_compute_environment.this["FARGATE_SPOT"].compute_resources[0].security_group_ids == toset(["sg-0w0rker"])
    error_message = "The workers run in the created subnets with the worker security group."
  }
}

run "created_subnets_skip_availability_zones_that_lack_an_endpoint_service" {
  command = plan

  override_data {
    target = data.aws_vpc_endpoint_service.interface["rekognition"]
    values = {
      availability_zones = ["us-east-1b", "us-east-1c"]
      service_name       = "com.amazonaws.us-east-1.rekognition"
    }
  }

  assert {
    condition     = [for s in aws_subnet.private : s.availability_zone] == ["us-east-1b", "us-east-1c"]
    error_message = "Subnets must be placed in availability zones that offer every interface endpoint."
  }

  assert {
    condition     = aws_vpc_endpoint.interface["rekognition"].service_name == "com.amazonaws.us-east-1.rekognition"
    error_message = "Interface endpoints must take the service name the endpoint service reports."
  }
}

run "more_availability_zones_than_offer_every_endpoint_are_refused" {
  command = plan

  variables {
    az_count = 3
  }

  override_data {
    target = data.aws_vpc_endpoint_service.interface["logs"]
    values = { availability_zones = ["us-east-1a", "us-east-1c"] }
  }

  expect_failures = [aws_vpc.this]
}

run "az_count_beyond_any_region_is_refused" {
  command = plan

  variables {
    az_count = 7
  }

  expect_failures = [var.az_count]
}

run "a_created_vpc_without_endpoints_is_refused_because_it_has_no_nat" {
  command = plan

  variables {
    create_vpc_endpoints = false
  }

  expect_failures = [var.create_vpc_endpoints]
}

run "a_vpc_too_small_for_every_concurrent_worker_is_refused" {
  command = plan

  # /24 gives /28 subnets: 16 - 5 reserved - 4 endpoints = 7 addresses each,
  # 14 in two zones, against 16 vCPUs / 1 vCPU x 2 Fargate environments.
  variables {
    vpc_cidr = "10.42.0.0/24"
  }

  expect_failures = [var.vpc_cidr]
}

run "a_small_vpc_is_accepted_when_the_workers_fit" {
  command = plan

  variables {
    vpc_cidr  = "10.42.0.0/24"
    max_vcpus = 4
  }

  assert {
    condition     = [for s in aws_subnet.private : s.cidr_block] == ["10.42.0.0/28", "10.42.0.16/28"]
    error_message = "A /24 VPC gets /28 subnets."
  }
}

run "a_vpc_smaller_than_a_slash_24_is_refused" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0/25"
  }

  expect_failures = [var.vpc_cidr]
}

run "own_subnets_carry_the_workers_and_one_endpoint_interface_per_zone" {
  command = plan

  variables {
    create_vpc = false
    subnet_ids = ["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"]
  }

  override_data {
    target = data.aws_subnet.worker["subnet-0aaa"]
    values = { id = "subnet-0aaa", vpc_id = "vpc-0a11ce00", availability_zone = "us-east-1a", map_public_ip_on_launch = false }
  }
  override_data {
    target = data.aws_subnet.worker["subnet-0bbb"]
    values = { id = "subnet-0bbb", vpc_id = "vpc-0a11ce00", availability_zone = "us-east-1a", map_public_ip_on_launch = false }
  }
  override_data {
    target = data.aws_subnet.worker["subnet-0ccc"]
    values = { id = "subnet-0ccc", vpc_id = "vpc-0a11ce00", availability_zone = "us-east-1b", map_public_ip_on_launch = false }
  }
  override_data {
    target = data.aws_vpc_endpoint_service.interface["rekognition"]
    values = { availability_zones = ["us-east-1b"] }
  }

  assert {
    condition     = length(aws_vpc.this) == 0 && aws_security_group.worker.vpc_id == "vpc-0a11ce00"
    error_message = "Own subnets: no VPC is created, and the worker's security group is in the subnets' VPC."
  }

  assert {
    condition     = aws_batch_compute_environment.this["FARGATE_SPOT"].compute_resources[0].subnets == toset(["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"])
    error_message = "The compute environment must run workers in every given subnet."
  }

  assert {
    condition = (
      aws_vpc_endpoint.interface["logs"].subnet_ids == toset(["subnet-0aaa", "subnet-0ccc"]) &&
      aws_vpc_endpoint.interface["rekognition"].subnet_ids == toset(["subnet-0ccc"])
    )
    error_message = "An interface endpoint takes one subnet per availability zone, and only zones its service is offered in."
  }

  assert {
    condition     = aws_vpc_endpoint.gateway["s3"].route_table_ids == toset(["rtb-0a11ce00"])
    error_message = "Gateway endpoints must be added to the VPC's route tables."
  }
}

run "own_subnets_without_endpoints_rely_on_your_nat" {
  command = plan

  variables {
    create_vpc           = false
    subnet_ids           = ["subnet-0aaa"]
    create_vpc_endpoints = false
  }

  assert {
    condition     = length(aws_vpc_endpoint.interface) == 0 && length(aws_vpc_endpoint.gateway) == 0 && length(aws_security_group.endpoints) == 0
    error_message = "create_vpc_endpoints = false must create no endpoints."
  }
}

run "own_subnets_offering_no_zone_of_an_endpoint_service_are_refused" {
  command = plan

  variables {
    create_vpc = false
    subnet_ids = ["subnet-0aaa"]
  }

  override_data {
    target = data.aws_vpc_endpoint_service.interface["rekognition"]
    values = { availability_zones = ["us-east-1c"] }
  }

  expect_failures = [aws_vpc_endpoint.interface]
}

run "subnets_of_two_vpcs_are_refused" {
  command = plan

  variables {
    create_vpc = false
    subnet_ids = ["subnet-0aaa", "subnet-0bbb"]
  }

  override_data {
    target = data.aws_subnet.worker["subnet-0bbb"]
    values = { vpc_id = "vpc-0b0b0b0b", availability_zone = "us-east-1b" }
  }

  expect_failures = [aws_security_group.worker]
}

run "own_subnets_with_create_vpc_still_true_are_refused" {
  command = plan

  variables {
    subnet_ids = ["subnet-0aaa"]
  }

  expect_failures = [var.subnet_ids]
}

run "ec2_workers_in_subnets_that_assign_public_ips_are_refused" {
  command = plan

  variables {
    create_vpc   = false
    subnet_ids   = ["subnet-0aaa", "subnet-0bbb"]
    compute_type = "EC2"
  }

  override_data {
    target = data.aws_subnet.worker["subnet-0bbb"]
    values = { vpc_id = "vpc-0a11ce00", availability_zone = "us-east-1b", map_public_ip_on_launch = true }
  }

  expect_failures = [aws_batch_compute_environment.this]
}

run "ec2_workers_in_private_subnets_of_your_own_get_the_ecs_endpoints" {
  command = plan

  variables {
    create_vpc   = false
    subnet_ids   = ["subnet-0aaa"]
    compute_type = "SPOT"
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["ecr.api", "ecr.dkr", "logs", "rekognition", "ecs", "ecs-agent", "ecs-telemetry"])
    error_message = "Instances without internet access register with ECS only through its endpoints."
  }
}

run "the_default_vpc_serves_fargate_from_its_default_subnets" {
  command = plan

  variables {
    create_vpc = false
  }

  override_data {
    target = data.aws_subnets.default[0]
    values = { ids = ["subnet-0ddd", "subnet-0aaa", "subnet-0ccc"] }
  }
  override_data {
    target = data.aws_subnet.worker["subnet-0aaa"]
    values = { id = "subnet-0aaa", vpc_id = "vpc-0defa017", availability_zone = "us-east-1a", map_public_ip_on_launch = true }
  }
  override_data {
    target = data.aws_subnet.worker["subnet-0ccc"]
    values = { id = "subnet-0ccc", vpc_id = "vpc-0defa017", availability_zone = "us-east-1c", map_public_ip_on_launch = true }
  }

  assert {
    condition     = aws_batch_compute_environment.this["FARGATE_SPOT"].compute_resources[0].subnets == toset(["subnet-0aaa", "subnet-0ccc"])
    error_message = "The default VPC lends az_count of its default subnets."
  }

  assert {
    condition     = length(aws_vpc.this) == 0 && aws_security_group.worker.vpc_id == "vpc-0defa017" && length(aws_vpc_endpoint.interface) == 4
    error_message = "The default VPC gets the worker's security group and the endpoints."
  }
}

run "the_default_vpc_without_endpoints_is_refused_because_workers_have_no_public_ip" {
  command = plan

  variables {
    create_vpc           = false
    create_vpc_endpoints = false
  }

  expect_failures = [var.create_vpc_endpoints]
}

run "ec2_workers_in_the_default_vpc_are_refused_because_its_subnets_assign_public_ips" {
  command = plan

  variables {
    create_vpc   = false
    compute_type = "EC2"
  }

  expect_failures = [var.compute_type]
}

run "a_default_vpc_with_fewer_subnets_than_az_count_is_refused" {
  command = plan

  variables {
    create_vpc = false
    az_count   = 3
  }

  override_data {
    target = data.aws_subnets.default[0]
    values = { ids = ["subnet-0aaa", "subnet-0bbb"] }
  }

  expect_failures = [aws_security_group.worker]
}

run "pinned_availability_zones_are_asked_for_by_name" {
  command = plan

  variables {
    availability_zones = ["us-east-1b", "us-east-1c"]
  }

  override_data {
    target = data.aws_availability_zones.available[0]
    values = { names = ["us-east-1b", "us-east-1c"] }
  }

  assert {
    condition     = one([for f in data.aws_availability_zones.available[0].filter : f.values if f.name == "zone-name"]) == toset(["us-east-1b", "us-east-1c"])
    error_message = "Pinned zones must be an identity filter of the zone lookup."
  }

  assert {
    condition     = [for s in aws_subnet.private : s.availability_zone] == ["us-east-1b", "us-east-1c"]
    error_message = "The subnets must be in the pinned zones."
  }
}

run "pinned_availability_zones_must_number_az_count" {
  command = plan

  variables {
    availability_zones = ["us-east-1a"]
  }

  expect_failures = [var.availability_zones]
}
