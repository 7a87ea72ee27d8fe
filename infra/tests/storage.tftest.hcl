# The images bucket with and without versioning, and the results table the
# code's schema expects (tests/tests/infra_contract.rs compares the same
# table with core's declarations).

mock_provider "aws" {
  override_during = plan
  source          = "./tests/mocks"
}

run "a_versioned_bucket_expires_old_versions_and_orphaned_delete_markers" {
  command = plan

  assert {
    condition     = aws_s3_bucket_versioning.images[0].versioning_configuration[0].status == "Enabled"
    error_message = "Versioning is on by default."
  }

  assert {
    condition = one([
      for r in aws_s3_bucket_lifecycle_configuration.images.rule : r.noncurrent_version_expiration[0].noncurrent_days
      if r.id == "expire-noncurrent-images"
    ]) == 30
    error_message = "Overwritten and deleted image versions must expire after noncurrent_version_expiration_days."
  }

  assert {
    condition = one([
      for r in aws_s3_bucket_lifecycle_configuration.images.rule : [r.filter[0].prefix, r.expiration[0].days]
      if r.id == "expire-manifests"
    ]) == ["labeler-manifests/", 30]
    error_message = "Manifests must expire under manifest_prefix after manifest_expiration_days."
  }
}

run "an_unversioned_bucket_has_no_versioning_resource" {
  command = plan

  variables {
    enable_versioning = false
  }

  assert {
    condition     = length(aws_s3_bucket_versioning.images) == 0
    error_message = "enable_versioning = false must not configure versioning."
  }
}

run "the_bucket_is_private_encrypted_and_tls_only" {
  command = plan

  assert {
    condition = (
      aws_s3_bucket_public_access_block.images.block_public_acls &&
      aws_s3_bucket_public_access_block.images.block_public_policy &&
      aws_s3_bucket_public_access_block.images.ignore_public_acls &&
      aws_s3_bucket_public_access_block.images.restrict_public_buckets
    )
    error_message = "Every public access block must be on."
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.images_bucket.statement : [s.effect, [for c in s.condition : c.variable]]] == [["Deny", ["aws:SecureTransport"]], ["Deny", ["s3:TlsVersion"]]]
    error_message = "The bucket policy must deny plain HTTP and TLS below 1.2."
  }

  assert {
    condition     = [for r in aws_s3_bucket_server_side_encryption_configuration.images.rule : r.apply_server_side_encryption_by_default[0].sse_algorithm] == ["AES256"]
    error_message = "Objects must be encrypted at rest."
  }
}

run "the_results_table_has_the_label_and_status_indexes_and_expires_tombstones" {
  command = plan

  assert {
    condition = {
      for i in aws_dynamodb_table.results.global_secondary_index : i.name => [i.hash_key, i.range_key, i.projection_type]
      } == {
      "by-label"  = ["label", "confidence", "ALL"]
      "by-status" = ["status_key", "status_at", "ALL"]
    }
    error_message = "The table needs the by-label and by-status indexes, projecting all attributes."
  }

  assert {
    condition     = { for a in aws_dynamodb_table.results.attribute : a.name => a.type } == { pk = "S", sk = "S", label = "S", confidence = "N", status_key = "S", status_at = "S" }
    error_message = "The table declares exactly its key attributes."
  }

  assert {
    condition     = aws_dynamodb_table.results.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.results.ttl[0].enabled
    error_message = "Tombstones expire through TTL on expires_at."
  }

  assert {
    condition     = aws_dynamodb_table.results.point_in_time_recovery[0].enabled && aws_dynamodb_table.results.deletion_protection_enabled
    error_message = "The table keeps point-in-time recovery and deletion protection."
  }
}
