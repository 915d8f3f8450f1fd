# Least privilege. The executor reads its input buckets (the public
# blockchain data among them) and reads and writes its own bucket. The driver
# may also submit, follow and terminate Batch jobs, write Glue tables and
# query them through the Athena workgroup.
locals {
  data_bucket_arn = aws_s3_bucket.data.arn
  input_bucket_arns = [
    for b in var.input_buckets : "arn:${data.aws_partition.current.partition}:s3:::${b}"
  ]
  queue_arns = concat(
    [aws_batch_job_queue.fargate.arn],
    aws_batch_job_queue.ec2_spot[*].arn,
  )
  glue_arns = [
    "arn:${data.aws_partition.current.partition}:glue:${var.region}:${data.aws_caller_identity.current.account_id}:catalog",
    aws_glue_catalog_database.eth.arn,
    "arn:${data.aws_partition.current.partition}:glue:${var.region}:${data.aws_caller_identity.current.account_id}:table/${aws_glue_catalog_database.eth.name}/*",
  ]
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Pulls images from ECR and writes logs; used by Fargate to start containers.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "executor" {
  statement {
    sid       = "ListInputs"
    actions   = ["s3:ListBucket"]
    resources = local.input_bucket_arns
  }

  statement {
    sid       = "ReadInputs"
    actions   = ["s3:GetObject"]
    resources = [for arn in local.input_bucket_arns : "${arn}/*"]
  }

  statement {
    sid       = "ListOwnBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.data_bucket_arn]
  }

  statement {
    sid = "ReadWriteOwnBucket"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${local.data_bucket_arn}/*"]
  }
}

resource "aws_iam_role" "executor" {
  name               = "${var.name}-executor"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "executor" {
  name   = "data-access"
  role   = aws_iam_role.executor.id
  policy = data.aws_iam_policy_document.executor.json
}

data "aws_iam_policy_document" "driver" {
  source_policy_documents = [data.aws_iam_policy_document.executor.json]

  statement {
    sid     = "SubmitExecutorJobs"
    actions = ["batch:SubmitJob", "batch:TagResource"]
    resources = concat(
      local.queue_arns,
      ["${aws_batch_job_definition.executor.arn_prefix}:*"],
      [for d in aws_batch_job_definition.executor_ec2 : "${d.arn_prefix}:*"],
    )
  }

  statement {
    sid = "FollowJobs"
    actions = [
      "batch:DescribeJobs",
      "batch:DescribeJobQueues",
      "batch:DescribeJobDefinitions",
      "batch:ListJobs",
    ]
    # Batch's Describe* and List* actions take no resource ARNs; ListJobs
    # follows an array job's children without describing all of them.
    resources = ["*"]
  }

  statement {
    sid       = "StopJobs"
    actions   = ["batch:TerminateJob"]
    resources = ["arn:${data.aws_partition.current.partition}:batch:${var.region}:${data.aws_caller_identity.current.account_id}:job/*"]
  }

  statement {
    sid = "RegisterTables"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:CreateTable",
      "glue:UpdateTable",
      "glue:GetPartition",
      "glue:GetPartitions",
      "glue:BatchCreatePartition",
      "glue:BatchDeletePartition",
    ]
    resources = local.glue_arns
  }

  # `run --verify-athena` counts committed rows through the workgroup; its
  # results land in the data bucket, which the driver may already write.
  statement {
    sid = "VerifyWithAthena"
    actions = [
      "athena:GetWorkGroup",
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
    ]
    resources = [aws_athena_workgroup.chainbatch.arn]
  }
}

resource "aws_iam_role" "driver" {
  name               = "${var.name}-driver"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "driver" {
  name   = "drive-runs"
  role   = aws_iam_role.driver.id
  policy = data.aws_iam_policy_document.driver.json
}

# EC2 Spot instances join the ECS cluster that Batch manages.
data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  count              = var.enable_ec2_spot ? 1 : 0
  name               = "${var.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "instance" {
  count      = var.enable_ec2_spot ? 1 : 0
  role       = aws_iam_role.instance[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "instance" {
  count = var.enable_ec2_spot ? 1 : 0
  name  = "${var.name}-instance"
  role  = aws_iam_role.instance[0].name
}

# EventBridge Scheduler submits the daily driver job or starts the state
# machine, and nothing else.
data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    actions = ["batch:SubmitJob", "batch:TagResource"]
    resources = [
      aws_batch_job_queue.driver.arn,
      "${aws_batch_job_definition.driver.arn_prefix}:*",
    ]
  }
  dynamic "statement" {
    for_each = local.state_machine ? [aws_sfn_state_machine.pipeline[0].arn] : []
    content {
      actions   = ["states:StartExecution"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "submit-daily-run"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
