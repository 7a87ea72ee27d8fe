# The AWS provider is pinned to 5.100, the last 5.x release, because that is
# the version `make infra-check` validates and plans offline (a filesystem
# mirror of it ships with the build machine): a version that cannot be checked
# here is not a version we can claim works. Two names differ from 6.x, which
# this configuration would otherwise use: the compute environment's
# `compute_environment_name_prefix` (6.x: `name_prefix`), and the implicit
# region of every resource (6.x adds a per-resource `region` argument, which
# is not used here). Moving to 6.x means renaming the former and re-running
# `make infra-check` against a 6.x mirror.
#
# .terraform.lock.hcl records the checksum of linux_amd64, the platform of the
# mirror. scripts/deploy.sh adds the checksums of the platform it runs on with
# `terraform providers lock -platform=<os>_<arch>` before `terraform init`.
#
# Terraform 1.9 is the oldest release whose variable validations may refer to
# other variables, which variables.tf relies on to refuse combinations that
# AWS would accept and then fail every job with.
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
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
