################################################################################
# Where the worker runs
#
# The shared job definition gives Fargate tasks no public IP
# (networkConfiguration.assignPublicIp = DISABLED), and EC2/SPOT instances are
# only placed in subnets that assign none, so a worker reaches AWS only
# through NAT or VPC endpoints. One of three networks (variables.tf refuses
# mixtures):
#   1. create_vpc (default): a VPC of its own with private subnets, no
#      internet gateway and no NAT; nothing else in the account changes.
#   2. subnet_ids: your subnets (bring NAT or keep create_vpc_endpoints).
#   3. neither: the default VPC's default subnets, Fargate only. The
#      endpoints' private DNS names then apply to everything in that VPC.
# With create_vpc_endpoints the worker reaches S3 and DynamoDB through gateway
# endpoints and ECR, CloudWatch Logs, Rekognition (and ECS for EC2/SPOT)
# through interface endpoints, each in the subnets of the availability zones
# that service is offered in; nothing else is reachable, and nothing can
# reach the worker.
################################################################################

locals {
  use_given_subnets = length(var.subnet_ids) > 0
  create_vpc        = var.create_vpc
  use_default_vpc   = !var.create_vpc && !local.use_given_subnets

  ec2_compute = contains(["EC2", "SPOT"], var.compute_type)

  # ECS endpoints let Batch-managed EC2 instances register with ECS without
  # internet access; Fargate does not need them.
  interface_services = concat(
    ["ecr.api", "ecr.dkr", "logs", "rekognition"],
    local.ec2_compute ? ["ecs", "ecs-agent", "ecs-telemetry"] : [],
  )

  # The most workers that can run at once, each taking one address (the
  # vpc_cidr validation): Fargate tasks, or EC2 instances of one vCPU or more.
  max_concurrent_workers = floor(var.max_vcpus / (local.fargate ? var.worker_vcpu : 1)) * length(local.compute_environments)

  # create_vpc: availability zones that offer every interface endpoint, so
  # that each subnet has all of them (use1-az3, for one, lacks some).
  region_azs = flatten(data.aws_availability_zones.available[*].names)
  vpc_az_candidates = [
    for az in local.region_azs : az
    if alltrue([for service in data.aws_vpc_endpoint_service.interface : contains(service.availability_zones, az)])
  ]
  vpc_azs = slice(local.vpc_az_candidates, 0, min(var.az_count, length(local.vpc_az_candidates)))

  default_subnet_ids = sort(flatten(data.aws_subnets.default[*].ids))
  looked_up_subnet_ids = (
    local.use_given_subnets ? var.subnet_ids :
    local.use_default_vpc ? slice(local.default_subnet_ids, 0, min(var.az_count, length(local.default_subnet_ids))) :
    []
  )

  # The worker's subnets, each with its availability zone.
  worker_subnets = local.create_vpc ? [
    for i, az in local.vpc_azs : { id = aws_subnet.private[i].id, az = az }
    ] : [
    for id in local.looked_up_subnet_ids : { id = id, az = data.aws_subnet.worker[id].availability_zone }
  ]
  subnet_ids = local.worker_subnets[*].id

  looked_up_vpc_ids = distinct([for s in data.aws_subnet.worker : s.vpc_id])
  # The first VPC, so that the worker security group's precondition (not a
  # failing one()) reports subnets of several VPCs.
  vpc_id = local.create_vpc ? aws_vpc.this[0].id : try(local.looked_up_vpc_ids[0], null)

  # An interface endpoint takes at most one subnet per availability zone, and
  # only in the zones its service is offered in.
  endpoint_subnet_ids = {
    for name, service in data.aws_vpc_endpoint_service.interface : name => [
      for az, ids in { for s in local.worker_subnets : s.az => s.id... if contains(service.availability_zones, s.az) } : ids[0]
    ]
  }
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Zones are an input: var.availability_zones pins them with a zone-name filter. Left empty (a convenience for a first deploy), the first az_count zones offering every endpoint are used, and variables.tf tells long-lived stacks to pin them.
  count = local.create_vpc ? 1 : 0

  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }

  dynamic "filter" {
    for_each = length(var.availability_zones) > 0 ? [var.availability_zones] : []

    content {
      name   = "zone-name"
      values = filter.value
    }
  }
}

data "aws_vpc_endpoint_service" "interface" {
  for_each = var.create_vpc_endpoints ? toset(local.interface_services) : toset([])

  service      = each.value
  service_type = "Interface"
}

data "aws_vpc" "default" {
  count = local.use_default_vpc ? 1 : 0

  default = true
}

data "aws_subnets" "default" {
  count = local.use_default_vpc ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

data "aws_subnet" "worker" {
  for_each = toset(local.looked_up_subnet_ids)

  id = each.value
}

################################################################################
# Optional VPC: private subnets only
################################################################################

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = var.name_prefix
  }

  lifecycle {
    precondition {
      condition     = length(local.vpc_az_candidates) >= var.az_count
      error_message = "az_count = ${var.az_count}, but ${var.region} has ${length(local.vpc_az_candidates)} availability zones offering every endpoint the worker needs (${join(", ", local.interface_services)}): ${join(", ", local.vpc_az_candidates)}. Lower az_count."
    }
  }
}

resource "aws_default_security_group" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = {
    Name = "${var.name_prefix}-default-unused"
  }
}

resource "aws_subnet" "private" {
  count = length(local.vpc_azs)

  vpc_id                  = aws_vpc.this[0].id
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone       = local.vpc_azs[count.index]
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name_prefix}-private-${local.vpc_azs[count.index]}"
  }
}

resource "aws_route_table" "private" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = {
    Name = "${var.name_prefix}-private"
  }
}

resource "aws_route_table_association" "private" {
  count = length(local.vpc_azs)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_158:Flow records hold addresses and ports, no payloads or secrets; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service principal.
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30) to keep the cost of an operational log proportionate; raise it where policy demands a year.
  count = local.create_vpc ? 1 : 0

  name              = "/aws/vpc/${var.name_prefix}-flow-logs"
  retention_in_days = var.log_retention_days
}

resource "aws_flow_log" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id                   = aws_vpc.this[0].id
  traffic_type             = "REJECT"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn             = aws_iam_role.flow_logs[0].arn
  max_aggregation_interval = 600
}

################################################################################
# Security groups: the worker accepts nothing and sends only HTTPS
################################################################################

resource "aws_security_group" "worker" {
  name_prefix = "${var.name_prefix}-worker-"
  description = "image-labeler worker: no inbound; outbound HTTPS to AWS APIs only"
  vpc_id      = local.vpc_id

  egress {
    description = "HTTPS to AWS APIs (VPC endpoints, or NAT when the subnets have one)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = length(local.looked_up_vpc_ids) <= 1
      error_message = "All subnet_ids must belong to one VPC; they belong to ${join(", ", local.looked_up_vpc_ids)}."
    }

    precondition {
      condition     = !local.use_default_vpc || length(local.default_subnet_ids) >= var.az_count
      error_message = "az_count = ${var.az_count}, but the default VPC of ${var.region} has ${length(local.default_subnet_ids)} default subnets. Lower az_count, or use create_vpc = true."
    }

    precondition {
      condition     = length(local.subnet_ids) > 0
      error_message = "No subnets for the worker: the region has no default VPC with default subnets. Use create_vpc = true or pass subnet_ids."
    }
  }
}

resource "aws_security_group" "endpoints" {
  count = var.create_vpc_endpoints ? 1 : 0

  name_prefix = "${var.name_prefix}-endpoints-"
  description = "image-labeler interface endpoints: HTTPS from the worker only"
  vpc_id      = local.vpc_id

  ingress {
    description     = "HTTPS from the worker"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.worker.id]
  }

  lifecycle {
    create_before_destroy = true
  }
}

################################################################################
# VPC endpoints
################################################################################

data "aws_route_tables" "vpc" {
  count = var.create_vpc_endpoints && !local.create_vpc ? 1 : 0

  vpc_id = local.vpc_id
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = var.create_vpc_endpoints ? toset(["s3", "dynamodb"]) : toset([])

  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${local.region}.${each.value}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.create_vpc ? aws_route_table.private[*].id : flatten(data.aws_route_tables.vpc[*].ids)

  tags = {
    Name = "${var.name_prefix}-${each.value}"
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = data.aws_vpc_endpoint_service.interface

  vpc_id              = local.vpc_id
  service_name        = each.value.service_name
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = local.endpoint_subnet_ids[each.key]
  security_group_ids  = [aws_security_group.endpoints[0].id]

  tags = {
    Name = "${var.name_prefix}-${each.key}"
  }

  lifecycle {
    precondition {
      condition     = length(local.endpoint_subnet_ids[each.key]) > 0
      error_message = "${each.key} is offered in ${join(", ", each.value.availability_zones)}, and none of the worker's subnets is in one of them. Add a subnet in one of those availability zones."
    }
  }
}
