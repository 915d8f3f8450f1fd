# Glue database for the output tables, and an Athena workgroup whose results
# stay in the data bucket, encrypted.
resource "aws_glue_catalog_database" "eth" {
  name        = replace("${var.name}_eth", "-", "_")
  description = "chainbatch outputs: hive-partitioned Parquet under s3://${var.bucket_name}/chainbatch/"
}

resource "aws_athena_workgroup" "chainbatch" {
  name          = var.name
  force_destroy = true

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    result_configuration {
      output_location = "s3://${aws_s3_bucket.data.bucket}/athena-results/"

      encryption_configuration {
        encryption_option = "SSE_S3"
      }
    }
  }
}

resource "aws_ecr_repository" "executor" {
  name                 = "${var.name}-executor"
  image_tag_mutability = "IMMUTABLE"

  encryption_configuration {
    encryption_type = "KMS"
  }

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_repository" "driver" {
  name                 = "${var.name}-driver"
  image_tag_mutability = "IMMUTABLE"

  encryption_configuration {
    encryption_type = "KMS"
  }

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_lifecycle_policy" "executor" {
  repository = aws_ecr_repository.executor.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 20 images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 20
      }
      action = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "batch" {
  #checkov:skip=CKV_AWS_158:job logs hold progress and errors, never data or credentials; CloudWatch encrypts them with its own key
  #checkov:skip=CKV_AWS_338:retention is the deployer's choice (log_retention_days, default 30 days): the logs describe runs that can be repeated
  name              = "/aws/batch/${var.name}"
  retention_in_days = var.log_retention_days
}
