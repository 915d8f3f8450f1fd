# chainbatch on AWS: the data bucket, Glue database, Athena workgroup, ECR
# repositories, Batch compute, IAM roles, logs and the daily schedule.
terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = var.name
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
