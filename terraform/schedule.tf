# The daily run: EventBridge Scheduler submits the driver job to Batch, or
# (orchestration = "step_functions") starts the pipeline's state machine
# for yesterday's data.
locals {
  driver_job_target = {
    arn = "arn:${data.aws_partition.current.partition}:scheduler:::aws-sdk:batch:submitJob"
    input = jsonencode({
      JobName       = "${var.name}-daily"
      JobQueue      = aws_batch_job_queue.driver.arn
      JobDefinition = aws_batch_job_definition.driver.arn
      Tags          = { "chainbatch:schedule" = "daily" }
    })
  }
  state_machine_target = {
    arn   = local.state_machine ? aws_sfn_state_machine.pipeline[0].arn : ""
    input = jsonencode({ dates = "yesterday" })
  }
  schedule_target = var.orchestration == "step_functions" ? local.state_machine_target : local.driver_job_target
}

resource "aws_scheduler_schedule" "daily" {
  #checkov:skip=CKV_AWS_297:the schedule's input names a job queue and definition, no secrets; EventBridge Scheduler encrypts it with an AWS owned key
  name                         = "${var.name}-daily"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = local.schedule_target.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = local.schedule_target.input

    retry_policy {
      maximum_retry_attempts = 2
    }
  }

  lifecycle {
    precondition {
      condition     = var.orchestration != "step_functions" || local.state_machine
      error_message = "orchestration = \"step_functions\" needs state_machine_definition: the file `chainbatch export step-functions --env aws --since-last-success` prints."
    }
  }
}
