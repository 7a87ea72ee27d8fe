################################################################################
# Naming, region, tags
################################################################################

variable "name_prefix" {
  description = "Prefix of every resource name. The dispatcher function is named \"<name_prefix>-dispatcher\", known before it exists; names that AWS keeps account-wide (IAM roles and policies, the dashboard) are \"<name_prefix>-<region>-...\", so one name_prefix can be deployed in several regions."
  type        = string
  default     = "image-labeler"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-24 characters of lower-case letters, digits and hyphens, starting with a letter (it is part of the S3 bucket name)."
  }
}

variable "region" {
  description = "AWS region of the whole stack. Rekognition must be available there and reads images only from buckets in the same region."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region code, e.g. eu-west-1."
  }

  # IAM role names, which carry the region (they are account-wide), are at
  # most 64 characters; the longest is "<name_prefix>-<region>-worker-execution".
  validation {
    condition     = length("${var.name_prefix}-${var.region}-worker-execution") <= 64
    error_message = "name_prefix \"${var.name_prefix}\" and region ${var.region} make the IAM role name \"${var.name_prefix}-${var.region}-worker-execution\", longer than IAM's 64 characters: shorten name_prefix to at most ${max(3, 64 - length("--worker-execution") - length(var.region))} characters."
  }
}

variable "tags" {
  description = "Tags added to every resource through the provider's default_tags (on top of Project, Stack and ManagedBy)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(lower(k), "aws:")])
    error_message = "Tag keys starting with \"aws:\" are reserved by AWS."
  }
}

################################################################################
# Trigger and dispatcher
################################################################################

variable "trigger_mode" {
  description = "How uploads reach the dispatcher: \"direct\" (S3 invokes the Lambda per event; low volume) or \"queued\" (S3 -> SQS -> Lambda with a batching window, packing many images into one Batch job)."
  type        = string
  default     = "queued"

  validation {
    condition     = contains(["direct", "queued"], var.trigger_mode)
    error_message = "trigger_mode must be \"direct\" or \"queued\"."
  }
}

variable "dispatcher_timeout_seconds" {
  description = "The dispatcher's timeout. `cargo lambda deploy` owns it (dispatcher/Cargo.toml [package.metadata.lambda.deploy].timeout); Terraform only derives the SQS visibility timeout from it. scripts/deploy.sh passes the Cargo.toml value and a contract test keeps this default equal to it."
  type        = number
  default     = 120

  validation {
    condition     = var.dispatcher_timeout_seconds >= 1 && var.dispatcher_timeout_seconds <= 900 && floor(var.dispatcher_timeout_seconds) == var.dispatcher_timeout_seconds
    error_message = "dispatcher_timeout_seconds must be a whole number of seconds between 1 and 900 (Lambda's limit)."
  }
}

variable "dispatcher_max_concurrency" {
  description = "Queued mode: most concurrent dispatcher invocations the SQS event source starts. Bounds SubmitJob traffic (Batch allows 50 SubmitJob calls per second per account)."
  type        = number
  default     = 10

  validation {
    condition     = var.dispatcher_max_concurrency >= 2 && var.dispatcher_max_concurrency <= 1000 && floor(var.dispatcher_max_concurrency) == var.dispatcher_max_concurrency
    error_message = "dispatcher_max_concurrency must be a whole number between 2 and 1000."
  }
}

variable "sqs_batch_size" {
  description = "Queued mode: most S3 event messages per dispatcher invocation. Above 10 requires batching_window_seconds >= 1."
  type        = number
  default     = 100

  validation {
    condition     = var.sqs_batch_size >= 1 && var.sqs_batch_size <= 10000 && floor(var.sqs_batch_size) == var.sqs_batch_size
    error_message = "sqs_batch_size must be a whole number between 1 and 10000."
  }

  validation {
    condition     = var.sqs_batch_size <= 10 || var.batching_window_seconds >= 1
    error_message = "sqs_batch_size = ${var.sqs_batch_size} needs batching_window_seconds >= 1: an SQS event source takes more than 10 messages per batch only with a batching window."
  }
}

variable "batching_window_seconds" {
  description = "Queued mode: how long the SQS event source gathers messages before invoking the dispatcher (maximum_batching_window_in_seconds). Longer windows pack more images per Batch job."
  type        = number
  default     = 20

  validation {
    condition     = var.batching_window_seconds >= 0 && var.batching_window_seconds <= 300 && floor(var.batching_window_seconds) == var.batching_window_seconds
    error_message = "batching_window_seconds must be a whole number between 0 and 300."
  }
}

variable "images_per_job" {
  description = "Images per Batch job, or per array child (the dispatcher's IMAGES_PER_JOB)."
  type        = number
  default     = 100

  validation {
    condition     = var.images_per_job >= 1 && var.images_per_job <= 10000 && floor(var.images_per_job) == var.images_per_job
    error_message = "images_per_job must be a whole number between 1 and 10000."
  }
}

variable "reconcile_schedule" {
  description = "How often EventBridge invokes the dispatcher's reconciler, which finds images QUEUED longer than their lease, asks Batch about their jobs and re-dispatches or fails them. Events make the pipeline fast; this schedule makes it converge when an event is lost. A rate() of at most 84 hours, or a cron() that runs every hour: the backlog alarm must see two passes within CloudWatch's 7-day evaluation limit."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate\\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\\)|cron\\([^()]+\\))$", var.reconcile_schedule))
    error_message = "reconcile_schedule must be an EventBridge schedule expression such as \"rate(5 minutes)\", \"rate(1 hour)\" (singular unit for 1, plural otherwise) or \"cron(0/10 * * * ? *)\"."
  }

  # The backlog alarm counts a period without a pass as breaching, so it must
  # know the longest gap between passes: a cron() schedule qualifies when it
  # runs every hour of every day.
  validation {
    condition     = !startswith(var.reconcile_schedule, "cron(") || can(regex("^cron\\(\\S+ \\* [*?] \\* [*?]( \\*)?\\)$", var.reconcile_schedule))
    error_message = "reconcile_schedule = ${var.reconcile_schedule} does not run every hour, and the backlog alarm, which fires when no reconciler pass reports, cannot follow it: use a cron() whose hour, day and month fields are * or ? (e.g. \"cron(0/10 * * * ? *)\"), or a rate()."
  }

  # The backlog alarm's window, as monitoring.tf sizes it (a validation may
  # not use locals derived from its own variable): periods of min(interval,
  # 1 day) spanning two intervals, within CloudWatch's limit.
  validation {
    condition = alltrue(flatten([
      for m in regexall("^rate\\(([0-9]+) (minute|hour|day)s?\\)$", var.reconcile_schedule) : [
        for i in [tonumber(m[0]) * { minute = 60, hour = 3600, day = 86400 }[m[1]]] :
        min(i, 86400) * ceil(2 * i / min(i, 86400)) <= (i < 3600 ? 86400 : 604800)
      ]
    ]))
    error_message = "reconcile_schedule = ${var.reconcile_schedule} is slower than the backlog alarm can follow: it must evaluate two reconciler periods, and CloudWatch evaluates an alarm over at most 7 days. Use at most rate(84 hours)."
  }
}

variable "image_prefixes" {
  description = "Key prefixes watched for images (e.g. [\"uploads/\", \"camera/\"]); empty watches the whole bucket. Each becomes one S3 notification filter and the dispatcher's INCLUDE_PREFIXES, so the two cannot disagree. S3 refuses overlapping filters, so no prefix may start another."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for p in var.image_prefixes : length(p) > 0 && alltrue([
        for q in var.image_prefixes : p == q || !startswith(q, p)
      ])
    ]) && length(distinct(var.image_prefixes)) == length(var.image_prefixes)
    error_message = "image_prefixes must be distinct, non-empty, and no prefix may start another (S3 refuses overlapping notification filters)."
  }
}

variable "image_suffixes" {
  description = "Lower-case key suffixes that are labeled: the dispatcher's IMAGE_SUFFIXES, matched without regard to case (IMG_0001.Jpg is a .jpg). S3 notifications filter on prefixes only, because S3's suffix filters are case-sensitive; every other key under the watched prefixes is recorded SKIPPED with the reason. The worker decides from the bytes: JPEG/PNG within Rekognition's limits are read by Rekognition from S3, WebP, GIF, TIFF, BMP, HEIC/HEIF, AVIF and oversized JPEG/PNG are converted by the worker (HEIC/HEIF and AVIF with libheif, which the worker image carries)."
  type        = list(string)
  default     = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"]

  validation {
    condition     = length(var.image_suffixes) > 0 && alltrue([for s in var.image_suffixes : contains([".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"], s)])
    error_message = "image_suffixes must be a non-empty subset of .jpg, .jpeg, .png, .webp, .gif, .tif, .tiff, .bmp, .heic, .heif and .avif."
  }
}

################################################################################
# Storage
################################################################################

variable "enable_versioning" {
  description = "Version the images bucket. The worker then labels the exact object version that raised the event."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "With versioning: days after which overwritten or deleted image versions are removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "manifest_prefix" {
  description = "Key prefix of the job manifests the dispatcher writes into the images bucket (its MANIFEST_PREFIX). Never taken as input."
  type        = string
  default     = "labeler-manifests/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-][A-Za-z0-9!_.*'()/-]*/$", var.manifest_prefix))
    error_message = "manifest_prefix must be a relative S3 key prefix ending in \"/\" (letters, digits, !_.*'()- and /)."
  }
}

variable "manifest_expiration_days" {
  description = "Days after which manifests expire. They must outlive every attempt of their job and the failure handling that reads them."
  type        = number
  default     = 30

  validation {
    condition     = var.manifest_expiration_days >= 2 && floor(var.manifest_expiration_days) == var.manifest_expiration_days
    error_message = "manifest_expiration_days must be a whole number of days, at least 2."
  }
}

variable "table_deletion_protection" {
  description = "Protect the results table against deletion. scripts/destroy.sh turns it off after confirmation."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the dispatcher's and the worker's CloudWatch log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

################################################################################
# Worker and AWS Batch
################################################################################

variable "worker_image_tag" {
  description = "Tag of the worker image in the ECR repository (scripts/deploy.sh pushes the git commit). Empty on the very first apply: the job definition is registered once an image exists."
  type        = string
  default     = ""

  validation {
    condition     = var.worker_image_tag == "" || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.worker_image_tag)) && var.worker_image_tag != "latest")
    error_message = "worker_image_tag must be a valid, immutable image tag (not \"latest\": the repository's tags are IMMUTABLE)."
  }
}

variable "compute_type" {
  description = "Batch compute: FARGATE_SPOT (default, cheapest; interruptions are retried and on-demand Fargate takes over when Spot is at max_vcpus, see fargate_on_demand_fallback), FARGATE, EC2 or SPOT (Graviton instances; these need private subnets, so not the default VPC)."
  type        = string
  default     = "FARGATE_SPOT"

  validation {
    condition     = contains(["FARGATE_SPOT", "FARGATE", "EC2", "SPOT"], var.compute_type)
    error_message = "compute_type must be FARGATE_SPOT, FARGATE, EC2 or SPOT."
  }

  # Batch launches EC2/SPOT instances with the subnet's public IP setting, and
  # the default VPC's subnets assign public IPs: the workers would be
  # reachable from the internet.
  validation {
    condition     = !contains(["EC2", "SPOT"], var.compute_type) || var.create_vpc || length(var.subnet_ids) > 0
    error_message = "compute_type = ${var.compute_type} launches instances with the subnets' public IP setting, and the default VPC's subnets assign public IPs. Use create_vpc = true, or subnet_ids of private subnets."
  }
}

variable "fargate_on_demand_fallback" {
  description = "FARGATE_SPOT only: add an on-demand FARGATE compute environment as the job queue's second choice. Batch places jobs there once the Spot environment runs max_vcpus, so up to twice max_vcpus may run at once; it does not fall back when Spot capacity is merely scarce (jobs then wait, up to runnable_timeout_seconds)."
  type        = bool
  default     = true
}

variable "max_vcpus" {
  description = "Most vCPUs each compute environment runs at once; with worker_vcpu it bounds concurrent jobs and so Rekognition traffic."
  type        = number
  default     = 16

  validation {
    condition     = var.max_vcpus >= 1 && var.max_vcpus <= 10000 && floor(var.max_vcpus) == var.max_vcpus
    error_message = "max_vcpus must be a whole number between 1 and 10000."
  }

  validation {
    condition     = var.max_vcpus >= var.worker_vcpu
    error_message = "max_vcpus (${var.max_vcpus}) must be at least worker_vcpu (${var.worker_vcpu}), or no job can ever start."
  }
}

variable "worker_vcpu" {
  description = "vCPUs of one worker container (the job definition's VCPU). Fractions (0.25, 0.5) run on Fargate only."
  type        = number
  default     = 1

  validation {
    condition     = contains([0.25, 0.5, 1, 2, 4, 8, 16], var.worker_vcpu)
    error_message = "worker_vcpu must be one of 0.25, 0.5, 1, 2, 4, 8 or 16."
  }

  # Batch refuses fractional vCPUs in EC2 job definitions at registration,
  # which would fail the deploy halfway.
  validation {
    condition     = contains(["FARGATE", "FARGATE_SPOT"], var.compute_type) || floor(var.worker_vcpu) == var.worker_vcpu
    error_message = "worker_vcpu = ${var.worker_vcpu} is fractional, which only Fargate runs; with compute_type = ${var.compute_type} use a whole number of vCPUs."
  }
}

variable "worker_memory_mib" {
  description = "Memory of one worker container in MiB (the job definition's MEMORY). On Fargate it must be a valid combination with worker_vcpu."
  type        = number
  default     = 2048

  validation {
    condition     = var.worker_memory_mib >= 512 && var.worker_memory_mib <= 122880 && floor(var.worker_memory_mib) == var.worker_memory_mib
    error_message = "worker_memory_mib must be a whole number between 512 and 122880."
  }

  validation {
    condition = !contains(["FARGATE", "FARGATE_SPOT"], var.compute_type) || (
      var.worker_memory_mib == 512 && var.worker_vcpu == 0.25 ||
      var.worker_memory_mib >= local.fargate_memory_range[0] &&
      var.worker_memory_mib <= local.fargate_memory_range[1] &&
      (var.worker_memory_mib - local.fargate_memory_range[0]) % local.fargate_memory_range[2] == 0
    )
    error_message = "worker_memory_mib = ${var.worker_memory_mib} is not a Fargate memory size for worker_vcpu = ${var.worker_vcpu}: Fargate takes ${local.fargate_memory_range[0]} to ${local.fargate_memory_range[1]} MiB in steps of ${local.fargate_memory_range[2]}${var.worker_vcpu == 0.25 ? ", or 512" : ""}."
  }
}

variable "ec2_instance_types" {
  description = "EC2/SPOT only: Graviton instance families or types the compute environment may launch (the worker image is linux/arm64)."
  type        = list(string)
  default     = ["c7g", "m7g", "c6g", "m6g"]

  validation {
    condition     = length(var.ec2_instance_types) > 0 && alltrue([for t in var.ec2_instance_types : can(regex("^[a-z]+[0-9]+g[a-z]*(\\.[0-9a-z]+)?$", t))])
    error_message = "ec2_instance_types must be Graviton (ARM64) families or types such as c7g, m7g.large or c6gn."
  }
}

variable "runnable_timeout_seconds" {
  description = "A job stuck RUNNABLE (no capacity, misconfiguration) this long is cancelled; its images become FAILED through the Batch job state change event."
  type        = number
  default     = 3600

  validation {
    condition     = var.runnable_timeout_seconds >= 600 && var.runnable_timeout_seconds <= 86400 && floor(var.runnable_timeout_seconds) == var.runnable_timeout_seconds
    error_message = "runnable_timeout_seconds must be a whole number between 600 and 86400 (Batch's limits)."
  }
}

variable "ecr_keep_images" {
  description = "Worker images kept in the ECR repository; older ones expire."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number between 1 and 1000."
  }
}

################################################################################
# Network
################################################################################

variable "subnet_ids" {
  description = "Your own subnets for the worker (with create_vpc = false). They need a route to S3, DynamoDB, ECR, CloudWatch Logs and Rekognition: a NAT, or the VPC endpoints create_vpc_endpoints adds. EC2/SPOT compute needs subnets that assign no public IPs. Empty with create_vpc = false: the default VPC's default subnets."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must be subnet ids (subnet-...)."
  }

  validation {
    condition     = length(var.subnet_ids) == 0 || !var.create_vpc
    error_message = "subnet_ids and create_vpc = true both choose the worker's network: set create_vpc = false to use your own subnets."
  }
}

variable "create_vpc" {
  description = "Create a VPC of the worker's own (private subnets only, no internet gateway, no NAT; AWS services through VPC endpoints). The default, because it changes nothing else in the account. With false, the worker uses subnet_ids, or else the default VPC, where the endpoints' private DNS names then apply to every workload in that VPC and creating them fails if it already has such endpoints."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "With create_vpc: the VPC's IPv4 CIDR block. Each availability zone gets one subnet of a sixteenth of it, which must hold every worker that may run at once plus the interface endpoints."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = try(cidrnetmask(var.vpc_cidr) != "" && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24, false)
    error_message = "vpc_cidr must be an IPv4 CIDR block between /16 and /24 (its subnets are 4 bits longer, and AWS subnets are at most /28)."
  }

  # Each subnet is a sixteenth of the VPC, less the 5 addresses AWS reserves
  # and one per interface endpoint; every Fargate task takes an address, and
  # so does every EC2 instance (which has at least one vCPU).
  validation {
    condition     = !var.create_vpc || try(var.az_count * (pow(2, 28 - tonumber(split("/", var.vpc_cidr)[1])) - 5 - length(local.interface_services)) >= local.max_concurrent_workers, true)
    error_message = "vpc_cidr = ${var.vpc_cidr} leaves ${try(var.az_count * (pow(2, 28 - tonumber(split("/", var.vpc_cidr)[1])) - 5 - length(local.interface_services)), "?")} addresses for workers in ${var.az_count} subnets, but up to ${local.max_concurrent_workers} workers may run at once (max_vcpus / worker_vcpu per compute environment). Use a larger vpc_cidr, a higher az_count or fewer max_vcpus."
  }
}

variable "az_count" {
  description = "Availability zones used: subnets created with create_vpc (in zones that offer every interface endpoint), or default-VPC subnets taken. Interface endpoints are billed per zone. A plan refuses more zones than the region offers."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 1 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number between 1 and 6 (no region has more availability zones for these services)."
  }
}

variable "availability_zones" {
  description = "With create_vpc: the availability zone names of the subnets (az_count of them), pinned. Empty: the first az_count zones, by name, that offer every interface endpoint; a later plan moves the subnets if AWS adds a zone or an endpoint service reaches another one, so pin them for a long-lived stack."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for z in var.availability_zones : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$", z))]) && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must be distinct zone names such as eu-west-1a."
  }

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == var.az_count
    error_message = "availability_zones names ${length(var.availability_zones)} zones but az_count is ${var.az_count}; name az_count zones."
  }
}

variable "create_vpc_endpoints" {
  description = "Add the VPC endpoints the worker needs without a public IP: S3 and DynamoDB (gateway, free) and ECR, CloudWatch Logs and Rekognition, plus ECS for EC2/SPOT compute (interface; about 0.01 USD per endpoint, AZ and hour). Turn off only with your own subnets that route through NAT or whose VPC already has these endpoints."
  type        = bool
  default     = true

  # The created VPC has no NAT, and default-VPC subnets reach the internet
  # only with public IPs, which the worker never gets: without endpoints
  # every job would fail pulling its image.
  validation {
    condition     = var.create_vpc_endpoints || length(var.subnet_ids) > 0
    error_message = "create_vpc_endpoints = false leaves the worker no route to AWS: ${var.create_vpc ? "the created VPC has no NAT" : "the default VPC's subnets reach the internet only with public IPs, which workers never get"}. Keep the endpoints, or pass subnet_ids of subnets with a NAT route."
  }
}

variable "reuse_labels" {
  description = "Label each distinct picture once: the worker reuses the labels of an image with the same ETag, size and labeling options instead of calling DetectLabels again (LABELER_REUSE_LABELS). Turn off for buckets whose ETags are not content digests and could repeat (SSE-C, SSE-KMS)."
  type        = bool
  default     = true
}

variable "reuse_ttl_days" {
  description = "Days stored labels are reused before a copy is labeled afresh (the content entry's TTL), so a new Rekognition label model is picked up (LABELER_REUSE_TTL_DAYS)."
  type        = number
  default     = 30

  validation {
    condition     = var.reuse_ttl_days >= 1 && var.reuse_ttl_days <= 3650 && floor(var.reuse_ttl_days) == var.reuse_ttl_days
    error_message = "reuse_ttl_days must be a whole number of days from 1 to 3650."
  }
}

################################################################################
# Rekognition rate
################################################################################

variable "rekognition_tps" {
  description = "DetectLabels calls per second the whole worker fleet may make (LABELER_FLEET_RATE; each worker paces itself to its share). null: the region's default quota as documented when this was written: 50 in us-east-1, us-west-2 and eu-west-1, 5 elsewhere. Your account's real value is in Service Quotas -> Amazon Rekognition -> \"Transactions per second per account for Amazon Rekognition Image operation DetectLabels\"; it can be raised there. Set it lower when other workloads in the account and region also call DetectLabels."
  type        = number
  default     = null

  validation {
    condition     = var.rekognition_tps == null ? true : var.rekognition_tps > 0
    error_message = "rekognition_tps must be a positive number of DetectLabels calls per second (or null for the region's default quota)."
  }
}

################################################################################
# Labeling backend
################################################################################

variable "label_backend" {
  description = "Who labels the images (LABELER_BACKEND): rekognition (Amazon Rekognition DetectLabels), local (the worker's own EfficientNet-Lite0 model on the task's CPU: no Rekognition call or charge, ImageNet's 1,000 classes, no people and no boxes) or cascade (the local model first, Rekognition for the images it is unsure of; see cascade_below and rekognition_budget)."
  type        = string
  default     = "rekognition"

  validation {
    condition     = contains(["rekognition", "local", "cascade"], var.label_backend)
    error_message = "label_backend must be rekognition, local or cascade."
  }
}

variable "min_confidence" {
  description = "Labels below this confidence, in percent, are not stored (the dispatcher's MIN_CONFIDENCE, DetectLabels' MinConfidence). null: 70 for rekognition, 25 for local and cascade (the local model spreads its probability over 1,000 classes, so a right answer can be 30%)."
  type        = number
  default     = null

  validation {
    condition     = var.min_confidence == null ? true : var.min_confidence >= 0 && var.min_confidence <= 100
    error_message = "min_confidence must be a percentage from 0 to 100 (or null for the backend's default)."
  }
}

variable "cascade_below" {
  description = "cascade only: send an image to Rekognition when the local model's most probable class is below this confidence, in percent (LABELER_CASCADE_BELOW). 0 never escalates; 100 escalates every image."
  type        = number
  default     = 60

  validation {
    condition     = var.cascade_below >= 0 && var.cascade_below <= 100
    error_message = "cascade_below must be a percentage from 0 to 100."
  }
}

variable "rekognition_budget" {
  description = "cascade only: most DetectLabels calls the whole fleet makes per rekognition_budget_period, counted in the results table (LABELER_REKOGNITION_BUDGET). Past it, images keep their local labels and their record says so. null: no cap."
  type        = number
  default     = null

  validation {
    condition     = var.rekognition_budget == null ? true : var.rekognition_budget >= 0 && floor(var.rekognition_budget) == var.rekognition_budget
    error_message = "rekognition_budget must be a whole number of calls, 0 or more (or null for no cap)."
  }
}

variable "rekognition_budget_period" {
  description = "The period rekognition_budget counts over, in UTC: day or month (LABELER_BUDGET_PERIOD)."
  type        = string
  default     = "month"

  validation {
    condition     = contains(["day", "month"], var.rekognition_budget_period)
    error_message = "rekognition_budget_period must be day or month."
  }
}

################################################################################
# Monitoring and alarms (monitoring.tf)
################################################################################

variable "backlog_alarm_seconds" {
  description = "Alarm when the oldest image still QUEUED is older than this many seconds (the reconciler's OldestQueuedAgeSeconds)."
  type        = number
  default     = 3600

  validation {
    condition     = var.backlog_alarm_seconds >= 300 && var.backlog_alarm_seconds <= 604800 && floor(var.backlog_alarm_seconds) == var.backlog_alarm_seconds
    error_message = "backlog_alarm_seconds must be a whole number of seconds from 300 (5 minutes) to 604800 (7 days)."
  }
}

variable "failed_rate_alarm_percent" {
  description = "Alarm when more than this percentage of the images that finished in 15 minutes ended FAILED (worker failures, images of failed Batch jobs, images that could not be submitted and images the reconciler recorded FAILED, against those plus the labeled ones)."
  type        = number
  default     = 5

  validation {
    condition     = var.failed_rate_alarm_percent > 0 && var.failed_rate_alarm_percent < 100
    error_message = "failed_rate_alarm_percent must be above 0 and below 100."
  }
}

variable "alarm_email" {
  description = "Email address notified when an alarm fires or clears: creates an SNS topic with this address subscribed (AWS sends a confirmation email first). null: no topic is created. Set this or alarm_topic_arn, not both."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null ? true : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address such as oncall@example.com."
  }

  validation {
    condition     = var.alarm_email == null || var.alarm_topic_arn == null
    error_message = "Set alarm_email (a topic is created for it) or alarm_topic_arn (your existing topic), not both; subscribe the address to your topic instead."
  }
}

variable "alarm_topic_arn" {
  description = "An existing standard SNS topic that the alarms notify when they fire or clear (its access policy must let cloudwatch.amazonaws.com publish, and, if it is encrypted, its customer managed key must let CloudWatch use it). null: see alarm_email; with neither, alarms only change state in the console."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null ? true : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be the ARN of a standard SNS topic (arn:aws:sns:<region>:<account>:<name>), not a FIFO topic: FIFO topics need a message group id on every publish, which alarm notifications do not carry."
  }
}
