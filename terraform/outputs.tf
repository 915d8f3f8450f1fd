output "bucket" {
  value = aws_s3_bucket.data.bucket
}

output "executor_repository_url" {
  value = aws_ecr_repository.executor.repository_url
}

output "driver_repository_url" {
  value = aws_ecr_repository.driver.repository_url
}

output "job_queue" {
  value = aws_batch_job_queue.fargate.name
}

output "executor_job_definition" {
  value = aws_batch_job_definition.executor.name
}

output "glue_database" {
  value = aws_glue_catalog_database.eth.name
}

output "athena_workgroup" {
  value = aws_athena_workgroup.chainbatch.name
}

# Paste into conf/aws/globals.yml: where outputs are registered and verified.
output "conf_aws_catalog" {
  value = <<-YAML
    glue:
      database: ${aws_glue_catalog_database.eth.name}
      region: ${var.region}
    athena:
      workgroup: ${aws_athena_workgroup.chainbatch.name}
      region: ${var.region}
  YAML
}

# Paste into conf/aws/globals.yml (or export CHAINBATCH_BUCKET).
output "conf_aws_batch" {
  value = <<-YAML
    batch:
      job_queue: ${aws_batch_job_queue.fargate.name}
      job_definition: ${aws_batch_job_definition.executor.name}
      region: ${var.region}
      image_tag: "${var.image_tag}"
  YAML
}

# With enable_ec2_spot: the queue and job definition for `batch.platform: ec2`.
output "conf_aws_batch_ec2" {
  value = var.enable_ec2_spot ? join("\n", [
    "batch:",
    "  job_queue: ${aws_batch_job_queue.ec2_spot[0].name}",
    "  job_definition: ${aws_batch_job_definition.executor_ec2[0].name}",
    "  platform: ec2",
  ]) : null
}
