variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "chainbatch"
}

variable "region" {
  description = "Region of the bucket, the Batch queue and the schedule. The public blockchain data lives in us-east-2."
  type        = string
  default     = "us-east-2"
}

variable "bucket_name" {
  description = "The data bucket: outputs, run journals, staging and shuffle objects."
  type        = string
}

variable "image_tag" {
  description = "Tag of the executor and driver images in ECR; conf/aws sets the same batch.image_tag."
  type        = string
  default     = "0.1.0"
}

variable "input_buckets" {
  description = "Buckets the executors may read, beside their own."
  type        = list(string)
  default     = ["aws-public-blockchain"]
}

variable "anonymous_buckets" {
  description = "Public buckets read with unsigned requests (CHAINBATCH_S3_ANONYMOUS_BUCKETS): no credentials needed."
  type        = list(string)
  default     = ["aws-public-blockchain"]
}

variable "subnet_ids" {
  description = "Subnets for Batch compute (with a route to S3 and ECR: a NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups for Batch compute; outbound HTTPS is all they need."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give Fargate tasks a public IP (subnets with an internet gateway and no NAT)."
  type        = bool
  default     = false
}

variable "max_vcpus" {
  description = "Upper bound on vCPUs each compute environment runs at once."
  type        = number
  default     = 256
}

variable "enable_ec2_spot" {
  description = "Also create an EC2 Spot compute environment and queue (larger disks and instance types than Fargate)."
  type        = bool
  default     = false
}

variable "executor_vcpus" {
  description = "Default vCPUs per executor container; the driver overrides per stage (batch.vcpus)."
  type        = number
  default     = 2
}

variable "executor_memory_mib" {
  description = "Default memory per executor container, MiB; the driver overrides per stage."
  type        = number
  default     = 4096
}

variable "executor_disk_gib" {
  description = "Fargate ephemeral storage per executor, GiB: room for sort spills and Ballista shuffle files."
  type        = number
  default     = 100
}

variable "job_timeout_seconds" {
  description = "Attempt timeout of executor and driver jobs."
  type        = number
  default     = 3600
}

variable "schedule_expression" {
  description = "When the daily pipeline runs (EventBridge Scheduler syntax, UTC). The public eth dataset delivers the previous day around 01:45 UTC; the default leaves an hour of margin, and the completeness gate refuses a day that is not there yet."
  type        = string
  default     = "cron(45 2 * * ? *)"
}

variable "staging_expiration_days" {
  description = "Days after which abandoned staging and shuffle objects expire."
  type        = number
  default     = 7
}

variable "datasets" {
  description = "Output datasets under chainbatch/ whose _chainbatch/ staging and shuffle prefixes expire."
  type        = list(string)
  default     = ["clean_transactions", "daily_address_stats", "daily_summary"]
}

variable "log_retention_days" {
  description = "Retention of the Batch job logs."
  type        = number
  default     = 30
}

variable "cpu_architecture" {
  description = "The CPU architecture of the executor and driver images (docker/build.sh builds for the machine it runs on): X86_64 or ARM64."
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ballista_scheduler_port" {
  description = "The driver's Ballista scheduler port; executors use the next two (Flight, gRPC). Matches batch.ballista in conf/aws."
  type        = number
  default     = 50050
}

variable "orchestration" {
  description = "What the daily schedule starts: driver_job (one driver job plans, submits and commits the whole run) or step_functions (the state machine of state_machine_definition: each step a short driver job)."
  type        = string
  default     = "driver_job"
  validation {
    condition     = contains(["driver_job", "step_functions"], var.orchestration)
    error_message = "orchestration must be driver_job or step_functions."
  }
}

variable "state_machine_definition" {
  description = "Path of the pipeline's state machine, as `chainbatch export step-functions --env aws --since-last-success` prints it; empty: no state machine is deployed."
  type        = string
  default     = ""
}
