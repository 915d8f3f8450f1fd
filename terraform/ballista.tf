# Distributed nodes: the driver's embedded Ballista scheduler and the
# executor containers of its run reach each other inside this group -
# executors poll the scheduler's gRPC port, and fetch shuffle output from
# each other's Arrow Flight port, as does the driver for the final results.
# Every compute environment attaches it beside var.security_group_ids.
data "aws_subnet" "first" {
  id = var.subnet_ids[0]
}

resource "aws_security_group" "ballista" {
  name        = "${var.name}-ballista"
  description = "chainbatch Ballista scheduler and executors within one run"
  vpc_id      = data.aws_subnet.first.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "ballista" {
  security_group_id            = aws_security_group.ballista.id
  referenced_security_group_id = aws_security_group.ballista.id
  description                  = "Ballista scheduler gRPC, executor Flight and gRPC"
  ip_protocol                  = "tcp"
  from_port                    = var.ballista_scheduler_port
  to_port                      = var.ballista_scheduler_port + 2
}

resource "aws_vpc_security_group_egress_rule" "ballista" {
  security_group_id            = aws_security_group.ballista.id
  referenced_security_group_id = aws_security_group.ballista.id
  description                  = "Ballista scheduler gRPC, executor Flight and gRPC"
  ip_protocol                  = "tcp"
  from_port                    = var.ballista_scheduler_port
  to_port                      = var.ballista_scheduler_port + 2
}

locals {
  compute_security_group_ids = concat(var.security_group_ids, [aws_security_group.ballista.id])
}
