################################################################################
# Where the worker runs
#
# The shared job definition gives Fargate tasks no public IP
# (networkConfiguration.assignPublicIp = DISABLED), so a task reaches AWS only
# through NAT or VPC endpoints. Three sources of subnets, in this order:
#   1. var.subnet_ids (yours; bring NAT or set create_vpc_endpoints),
#   2. var.create_vpc: private subnets, no internet gateway and no NAT,
#   3. otherwise the default VPC's default subnets.
# With create_vpc_endpoints the worker reaches S3 and DynamoDB through gateway
# endpoints and ECR, CloudWatch Logs and Rekognition through interface
# endpoints; nothing else is reachable, and nothing can reach the worker.
################################################################################

locals {
  use_given_subnets = length(var.subnet_ids) > 0
  create_vpc        = !local.use_given_subnets && var.create_vpc
  use_default_vpc   = !local.use_given_subnets && !var.create_vpc

  given_vpc_ids   = distinct([for s in data.aws_subnet.given : s.vpc_id])
  default_subnets = sort(flatten(data.aws_subnets.default[*].ids))

  vpc_id = coalesce(
    try(local.given_vpc_ids[0], null),
    one(aws_vpc.this[*].id),
    one(data.aws_vpc.default[*].id),
  )

  subnet_ids = (
    local.use_given_subnets ? var.subnet_ids :
    local.create_vpc ? aws_subnet.private[*].id :
    slice(local.default_subnets, 0, min(var.az_count, length(local.default_subnets)))
  )

  # Interface endpoints take at most one subnet per availability zone.
  endpoint_subnet_ids = (
    local.use_given_subnets ? [for az, ids in { for s in data.aws_subnet.given : s.availability_zone => s.id... } : ids[0]] :
    local.subnet_ids
  )

  ec2_compute = contains(["EC2", "SPOT"], var.compute_type)

  # ECS endpoints let Batch-managed EC2 instances register without internet
  # access; Fargate does not need them.
  interface_endpoints = concat(
    ["ecr.api", "ecr.dkr", "logs", "rekognition"],
    local.ec2_compute && local.create_vpc ? ["ecs", "ecs-agent", "ecs-telemetry"] : [],
  )
}

check "network_inputs" {
  assert {
    condition     = !(var.create_vpc && length(var.subnet_ids) > 0)
    error_message = "create_vpc is ignored because subnet_ids is set."
  }
}

data "aws_subnet" "given" {
  for_each = toset(var.subnet_ids)

  id = each.value
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

data "aws_availability_zones" "available" {
  count = local.create_vpc ? 1 : 0

  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
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
}

resource "aws_default_security_group" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = {
    Name = "${var.name_prefix}-default-unused"
  }
}

resource "aws_subnet" "private" {
  count = local.create_vpc ? var.az_count : 0

  vpc_id                  = aws_vpc.this[0].id
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone       = data.aws_availability_zones.available[0].names[count.index]
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name_prefix}-private-${data.aws_availability_zones.available[0].names[count.index]}"
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
  count = local.create_vpc ? var.az_count : 0

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
      condition     = length(local.given_vpc_ids) <= 1
      error_message = "All subnet_ids must belong to one VPC."
    }

    precondition {
      condition     = length(local.subnet_ids) > 0
      error_message = "No subnets found: the region has no default VPC with default subnets. Set create_vpc = true or pass subnet_ids."
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
  for_each = var.create_vpc_endpoints ? toset(local.interface_endpoints) : toset([])

  vpc_id              = local.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = local.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]

  tags = {
    Name = "${var.name_prefix}-${each.value}"
  }
}
