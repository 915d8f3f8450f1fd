# The daily run: EventBridge Scheduler submits the driver job to Batch.
resource "aws_scheduler_schedule" "daily" {
  #checkov:skip=CKV_AWS_297:the schedule's input names a job queue and definition, no secrets; EventBridge Scheduler encrypts it with an AWS owned key
  name                         = "${var.name}-daily"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${data.aws_partition.current.partition}:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.scheduler.arn
    input = jsonencode({
      JobName       = "${var.name}-daily"
      JobQueue      = aws_batch_job_queue.driver.arn
      JobDefinition = aws_batch_job_definition.driver.arn
      Tags          = { "chainbatch:schedule" = "daily" }
    })

    retry_policy {
      maximum_retry_attempts = 2
    }
  }
}
