# The data bucket: encrypted, never public, and with chainbatch's transient
# objects (staging, shuffle, retired partitions) expiring on their own.
resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_18:every object is written by chainbatch's own roles, whose calls CloudTrail records; access logs would need a second bucket
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events; runs are scheduled, not triggered by objects
  #checkov:skip=CKV_AWS_144:the outputs are derived from the public dataset and rebuilt by rerunning the days; a replica would double the storage
  #checkov:skip=CKV_AWS_21:reruns replace partitions and the commit deletes staging objects; versions would keep every replaced copy, and the data can be rebuilt
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) by default; chainbatch writes with SSE-KMS when AWS_SERVER_SIDE_ENCRYPTION=aws:kms is set
  bucket = var.bucket_name
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  dynamic "rule" {
    for_each = toset(var.datasets)
    content {
      id     = "expire-staging-${rule.value}"
      status = "Enabled"

      filter {
        prefix = "chainbatch/${rule.value}/_chainbatch/staging/"
      }

      expiration {
        days = var.staging_expiration_days
      }
    }
  }

  dynamic "rule" {
    for_each = toset(var.datasets)
    content {
      id     = "expire-shuffle-${rule.value}"
      status = "Enabled"

      filter {
        prefix = "chainbatch/${rule.value}/_chainbatch/shuffle/"
      }

      expiration {
        days = var.staging_expiration_days
      }
    }
  }

  rule {
    id     = "expire-athena-results"
    status = "Enabled"

    filter {
      prefix = "athena-results/"
    }

    expiration {
      days = 30
    }
  }
}
