# The pipeline as a Step Functions state machine (`chainbatch export
# step-functions`): a begin, a plan and a commit step per node and a finish
# step, each a short job of the driver's definition, and each stage a Batch
# job of the executor's. The run's journal carries it between steps.
locals {
  state_machine = var.state_machine_definition != ""
}

resource "aws_cloudwatch_log_group" "state_machine" {
  #checkov:skip=CKV_AWS_158:execution logs hold step names and errors, never data or credentials; CloudWatch encrypts them with its own key
  #checkov:skip=CKV_AWS_338:retention is the deployer's choice (log_retention_days, default 30 days): the logs describe runs that can be repeated
  count             = local.state_machine ? 1 : 0
  name              = "/aws/vendedlogs/states/${var.name}-pipeline"
  retention_in_days = var.log_retention_days
}

resource "aws_sfn_state_machine" "pipeline" {
  count      = local.state_machine ? 1 : 0
  name       = "${var.name}-pipeline"
  role_arn   = aws_iam_role.state_machine[0].arn
  definition = file(var.state_machine_definition)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine[0].arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }
}

# The state machine submits and follows the steps' and stages' Batch jobs
# (`.sync` follows them through an EventBridge rule it manages), reads the
# plan documents the plan steps write, and writes its logs and traces.
data "aws_iam_policy_document" "state_machine_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "state_machine" {
  statement {
    sid     = "SubmitStepsAndStages"
    actions = ["batch:SubmitJob", "batch:TagResource"]
    resources = concat(
      [
        aws_batch_job_queue.driver.arn,
        aws_batch_job_queue.fargate.arn,
        "${aws_batch_job_definition.driver.arn_prefix}:*",
        "${aws_batch_job_definition.executor.arn_prefix}:*",
      ],
      aws_batch_job_queue.ec2_spot[*].arn,
      [for d in aws_batch_job_definition.executor_ec2 : "${d.arn_prefix}:*"],
    )
  }
  statement {
    sid       = "FollowJobs"
    actions   = ["batch:DescribeJobs"]
    resources = ["*"]
  }
  statement {
    sid       = "StopJobs"
    actions   = ["batch:TerminateJob"]
    resources = ["arn:${data.aws_partition.current.partition}:batch:${var.region}:${data.aws_caller_identity.current.account_id}:job/*"]
  }
  statement {
    sid     = "SyncRule"
    actions = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = [
      "arn:${data.aws_partition.current.partition}:events:${var.region}:${data.aws_caller_identity.current.account_id}:rule/StepFunctionsGetEventsForBatchJobsRule",
    ]
  }
  statement {
    sid       = "ReadPlanDocuments"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/chainbatch/_chainbatch/runs/*"]
  }
  statement {
    sid = "DeliverLogsAndTraces"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
      "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role" "state_machine" {
  count              = local.state_machine ? 1 : 0
  name               = "${var.name}-state-machine"
  assume_role_policy = data.aws_iam_policy_document.state_machine_assume.json
}

resource "aws_iam_role_policy" "state_machine" {
  count  = local.state_machine ? 1 : 0
  name   = "run-pipeline-steps"
  role   = aws_iam_role.state_machine[0].id
  policy = data.aws_iam_policy_document.state_machine.json
}
