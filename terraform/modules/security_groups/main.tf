# Who may talk to whom:
#   clients (allowed CIDRs) --443--> ALB --50051--> services
#   services <--50051--> services (Service Connect)
#   observability collector --9464--> services (/metrics)
#   services --5432--> database
#   datasource, snapshot --source ports--> customers' source databases
# Every group starts with no rule; each rule below carries a description.

locals {
  all_ipv4 = "0.0.0.0/0"
}

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Attached to the load balancer in modules/ecs (aws_lb.this) through this module's output; checkov does not follow module outputs into other modules.
  name        = "${var.name}-alb"
  description = "${var.name}: the public gRPC load balancer"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_security_group" "services" {
  #checkov:skip=CKV2_AWS_5:Attached to every Pulse ECS service in modules/ecs (aws_ecs_service.service) through this module's output; checkov does not follow module outputs into other modules.
  name        = "${var.name}-services"
  description = "${var.name}: the Pulse service tasks"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-services" })
}

resource "aws_security_group" "source_access" {
  #checkov:skip=CKV2_AWS_5:Attached to the datasource and snapshot ECS services in modules/ecs (aws_ecs_service.service) through this module's output; checkov does not follow module outputs into other modules.
  name        = "${var.name}-source-access"
  description = "${var.name}: egress to customers' source databases (datasource and snapshot tasks only)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-source-access" })
}

resource "aws_security_group" "observability" {
  #checkov:skip=CKV2_AWS_5:Attached to the metrics collector ECS service in modules/observability (aws_ecs_service.collector) through this module's output; checkov does not follow module outputs into other modules.
  name        = "${var.name}-observability"
  description = "${var.name}: the metrics collector scraping the services"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-observability" })
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:Attached to the RDS instance in modules/rds (aws_db_instance.this) through this module's output; checkov does not follow module outputs into other modules.
  name        = "${var.name}-database"
  description = "${var.name}: the PostgreSQL metadata database"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-database" })
}

# ---- ALB -----------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "gRPC over TLS from allowed clients (${each.value})"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http_redirect" {
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP from allowed clients (${each.value}), answered only with a redirect to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_services" {
  security_group_id            = aws_security_group.alb.id
  description                  = "gRPC requests and health checks to the service tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.grpc_port
  to_port                      = var.grpc_port
  referenced_security_group_id = aws_security_group.services.id
}

# ---- services --------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "services_from_alb" {
  security_group_id            = aws_security_group.services.id
  description                  = "gRPC from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.grpc_port
  to_port                      = var.grpc_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "services_from_services" {
  security_group_id            = aws_security_group.services.id
  description                  = "gRPC between Pulse services (Service Connect)"
  ip_protocol                  = "tcp"
  from_port                    = var.grpc_port
  to_port                      = var.grpc_port
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_ingress_rule" "services_metrics" {
  security_group_id            = aws_security_group.services.id
  description                  = "Prometheus /metrics scrapes from the observability collector"
  ip_protocol                  = "tcp"
  from_port                    = var.metrics_port
  to_port                      = var.metrics_port
  referenced_security_group_id = aws_security_group.observability.id
}

resource "aws_vpc_security_group_egress_rule" "services_to_services" {
  security_group_id            = aws_security_group.services.id
  description                  = "gRPC to other Pulse services (Service Connect)"
  ip_protocol                  = "tcp"
  from_port                    = var.grpc_port
  to_port                      = var.grpc_port
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "services_to_database" {
  security_group_id            = aws_security_group.services.id
  description                  = "PostgreSQL metadata database"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_vpc_security_group_egress_rule" "services_https" {
  security_group_id = aws_security_group.services.id
  description       = "HTTPS to AWS APIs through NAT: ECR, S3, Secrets Manager, CloudWatch Logs, Service Connect"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = local.all_ipv4
}

# ---- source databases (datasource and snapshot only) ---------------------------------

resource "aws_vpc_security_group_egress_rule" "source_access" {
  for_each = { for rule in var.source_egress_rules : "${rule.cidr_ipv4}:${rule.port}" => rule }

  security_group_id = aws_security_group.source_access.id
  description       = each.value.description
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr_ipv4
}

# ---- observability collector -----------------------------------------------------------

resource "aws_vpc_security_group_egress_rule" "observability_scrape" {
  security_group_id            = aws_security_group.observability.id
  description                  = "Scrape Prometheus /metrics on the service tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.metrics_port
  to_port                      = var.metrics_port
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "observability_https" {
  security_group_id = aws_security_group.observability.id
  description       = "HTTPS through NAT: Prometheus remote write, ECS task discovery, image pulls, logs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = local.all_ipv4
}

# ---- database --------------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "database_from_services" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the Pulse service tasks only"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.services.id
}
