################################################################################
# Images bucket
################################################################################

resource "aws_s3_bucket" "images" {
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) on purpose: with a KMS key every uploader, the worker (Rekognition reads the object with the caller's permissions) and the dispatcher would need kms:Decrypt/GenerateDataKey grants, and every GET/PUT a KMS request; the images gain nothing from a customer key that SSE-S3 does not give.
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket (which itself would need logging); object-level audit belongs in the account's CloudTrail data events, and every image's processing is already recorded in the results table and the logs.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage for inputs that can be re-uploaded; the valuable output (labels) lives in DynamoDB with point-in-time recovery.
  bucket = local.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "images" {
  bucket = aws_s3_bucket.images.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "images" {
  count = var.enable_versioning ? 1 : 0

  bucket = aws_s3_bucket.images.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "images" {
  bucket = aws_s3_bucket.images.id

  rule {
    id     = "expire-manifests"
    status = "Enabled"

    filter {
      prefix = var.manifest_prefix
    }

    expiration {
      days = var.manifest_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Harmless without versioning: there are no noncurrent versions then.
  rule {
    id     = "expire-noncurrent-images"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.images]
}

data "aws_iam_policy_document" "images_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.images.arn,
      "${aws_s3_bucket.images.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "DenyOutdatedTls"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.images.arn,
      "${aws_s3_bucket.images.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "images" {
  bucket = aws_s3_bucket.images.id
  policy = data.aws_iam_policy_document.images_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.images]
}

################################################################################
# Results table (core/src/table.rs and core/src/schema.rs; compared by
# tests/tests/infra_contract.rs)
################################################################################

resource "aws_dynamodb_table" "results" {
  #checkov:skip=CKV_AWS_119:Encrypted with the AWS managed key (aws/dynamodb), auditable in CloudTrail; a customer key adds a key policy and per-request KMS cost to every conditional write without protecting against anything the managed key does not.
  name                        = local.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "label"
    type = "S"
  }

  attribute {
    name = "confidence"
    type = "N"
  }

  attribute {
    name = "status_key"
    type = "S"
  }

  attribute {
    name = "status_at"
    type = "S"
  }

  # "Images with label X at confidence >= c": one Query per label.
  global_secondary_index {
    name            = "by-label"
    hash_key        = "label"
    range_key       = "confidence"
    projection_type = "ALL"
  }

  # The reconciler's view of unfinished work: sparse, because only QUEUED,
  # FAILED and SKIPPED records carry status_key (sharded per status), ordered
  # by when they entered that status.
  global_secondary_index {
    name            = "by-status"
    hash_key        = "status_key"
    range_key       = "status_at"
    projection_type = "ALL"
  }

  # Delete tombstones expire; records without expires_at never do.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}
