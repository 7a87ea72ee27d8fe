# Provider v6 is required, not merely v5: v6 renamed the compute environment's
# `compute_environment_name_prefix` to `name_prefix`, and the job queue's
# `compute_environment_order` / `job_state_time_limit_action` blocks are the
# current API; one configuration cannot be valid for both majors.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project   = "image-labeler"
      Stack     = var.name_prefix
      ManagedBy = "terraform"
    })
  }
}
