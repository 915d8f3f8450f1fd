# Batch compute: Fargate Spot first, on-demand Fargate when Spot has no
# capacity, and an optional EC2 Spot environment with its own queue.
resource "aws_batch_compute_environment" "fargate_spot" {
  compute_environment_name = "${var.name}-fargate-spot"
  type                     = "MANAGED"

  compute_resources {
    type               = "FARGATE_SPOT"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = local.compute_security_group_ids
  }
}

resource "aws_batch_compute_environment" "fargate" {
  compute_environment_name = "${var.name}-fargate"
  type                     = "MANAGED"

  compute_resources {
    type               = "FARGATE"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = local.compute_security_group_ids
  }
}

resource "aws_batch_compute_environment" "ec2_spot" {
  count                    = var.enable_ec2_spot ? 1 : 0
  compute_environment_name = "${var.name}-ec2-spot"
  type                     = "MANAGED"

  compute_resources {
    type                = "SPOT"
    allocation_strategy = "SPOT_PRICE_CAPACITY_OPTIMIZED"
    min_vcpus           = 0
    max_vcpus           = var.max_vcpus
    instance_type       = ["m6i", "m7i", "r6i", "r7i"]
    instance_role       = aws_iam_instance_profile.instance[0].arn
    subnets             = var.subnet_ids
    security_group_ids  = local.compute_security_group_ids
  }
}

resource "aws_batch_job_queue" "fargate" {
  name     = var.name
  state    = "ENABLED"
  priority = 10

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate_spot.arn
  }

  compute_environment_order {
    order               = 2
    compute_environment = aws_batch_compute_environment.fargate.arn
  }
}

# The driver runs on on-demand capacity: a Spot interruption of the process
# that holds the run's leases and commits would cost the whole run a retry.
resource "aws_batch_job_queue" "driver" {
  name     = "${var.name}-driver"
  state    = "ENABLED"
  priority = 10

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate.arn
  }
}

resource "aws_batch_job_queue" "ec2_spot" {
  count    = var.enable_ec2_spot ? 1 : 0
  name     = "${var.name}-ec2-spot"
  state    = "ENABLED"
  priority = 10

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.ec2_spot[0].arn
  }
}

locals {
  network_configuration = {
    assignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED"
  }
  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.batch.name
      awslogs-region        = var.region
      awslogs-stream-prefix = var.name
    }
  }
}

# The executor's environment contract: the driver's container overrides set
# the command (`run --spec s3://...`), CHAINBATCH_RUN_ID, CHAINBATCH_NODE,
# CHAINBATCH_STAGE and CHAINBATCH_SPEC_URI, and vCPU and memory per stage.
# Batch itself sets AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ATTEMPT.
# Credentials are the job role's; each bucket is reached in its own region;
# the buckets in anonymous_buckets are read unsigned.
resource "aws_batch_job_definition" "executor" {
  name                  = "${var.name}-executor"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  container_properties = jsonencode({
    image            = "${aws_ecr_repository.executor.repository_url}:${var.image_tag}"
    command          = ["--help"]
    jobRoleArn       = aws_iam_role.executor.arn
    executionRoleArn = aws_iam_role.execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.executor_vcpus) },
      { type = "MEMORY", value = tostring(var.executor_memory_mib) },
    ]
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "CHAINBATCH_S3_ANONYMOUS_BUCKETS", value = join(",", var.anonymous_buckets) },
      { name = "TMPDIR", value = "/tmp" },
    ]
    ephemeralStorage             = { sizeInGiB = var.executor_disk_gib }
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    runtimePlatform              = { cpuArchitecture = var.cpu_architecture, operatingSystemFamily = "LINUX" }
    networkConfiguration         = local.network_configuration
    logConfiguration             = local.log_configuration
  })

  retry_strategy {
    attempts = 3

    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }

    evaluate_on_exit {
      on_exit_code = "4"
      action       = "RETRY"
    }

    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }
}

# Executors on EC2 compute (enable_ec2_spot): Fargate and EC2 environments
# share neither a queue nor a job definition. Point conf/aws at the
# ec2-spot queue and this definition, with `batch.platform: ec2`.
resource "aws_batch_job_definition" "executor_ec2" {
  count                 = var.enable_ec2_spot ? 1 : 0
  name                  = "${var.name}-executor-ec2"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  container_properties = jsonencode({
    image      = "${aws_ecr_repository.executor.repository_url}:${var.image_tag}"
    command    = ["--help"]
    jobRoleArn = aws_iam_role.executor.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(ceil(var.executor_vcpus)) },
      { type = "MEMORY", value = tostring(var.executor_memory_mib) },
    ]
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "CHAINBATCH_S3_ANONYMOUS_BUCKETS", value = join(",", var.anonymous_buckets) },
      { name = "TMPDIR", value = "/tmp" },
    ]
    logConfiguration = local.log_configuration
  })

  retry_strategy {
    attempts = 3

    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }

    evaluate_on_exit {
      on_exit_code = "4"
      action       = "RETRY"
    }

    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }
}

# The driver: plans the day's run, submits executor jobs, commits, exits.
resource "aws_batch_job_definition" "driver" {
  name                  = "${var.name}-driver"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  container_properties = jsonencode({
    image            = "${aws_ecr_repository.driver.repository_url}:${var.image_tag}"
    command          = ["run", "--env", "aws", "--backend", "batch", "--dates", "yesterday", "--since-last-success", "--log-format", "json"]
    jobRoleArn       = aws_iam_role.driver.arn
    executionRoleArn = aws_iam_role.execution.arn
    resourceRequirements = [
      { type = "VCPU", value = "1" },
      { type = "MEMORY", value = "2048" },
    ]
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "CHAINBATCH_BUCKET", value = aws_s3_bucket.data.bucket },
      { name = "CHAINBATCH_S3_ANONYMOUS_BUCKETS", value = join(",", var.anonymous_buckets) },
    ]
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    runtimePlatform              = { cpuArchitecture = var.cpu_architecture, operatingSystemFamily = "LINUX" }
    networkConfiguration         = local.network_configuration
    logConfiguration             = local.log_configuration
  })

  # A lost host or a container that failed to start is retried; the next
  # attempt continues the run the lost one left (same run id: the job's),
  # reusing its finished tasks. A run that failed is not retried; a step of
  # the state machine that failed on storage (`chainbatch step` exit 4) is.
  retry_strategy {
    attempts = 3

    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }

    evaluate_on_exit {
      on_status_reason = "Task failed to start"
      action           = "RETRY"
    }

    evaluate_on_exit {
      on_exit_code = "4"
      action       = "RETRY"
    }

    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds * 4
  }
}
