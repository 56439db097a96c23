# The Pulse services on ECS Fargate: one cluster, one service per Pulse
# service (`pulse serve <service>`, all from one image), an application load
# balancer routing gRPC by package path, Service Connect for the calls
# between services, and autoscaling on CPU and on requests per target.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  grpc_port    = 50051
  metrics_port = 9464
  state_dir    = "/var/lib/pulse"
  image        = "${var.image_repository}:${var.image_tag}"

  service_names = sort(keys(var.services))

  # What the load balancer sends where, by gRPC method path
  # (/<package>.<Service>/<Method>). The admin API is served by every Pulse
  # process, but only datasource is given the admin key, so it goes there.
  routes = {
    datasource = { service = "datasource", path = "/pulse.datasource.v1.*", priority = 100 }
    admin      = { service = "datasource", path = "/pulse.admin.v1.*", priority = 110 }
    health     = { service = "datasource", path = "/grpc.health.v1.Health/*", priority = 120 }
    snapshot   = { service = "snapshot", path = "/pulse.snapshot.v1.*", priority = 200 }
    trainer    = { service = "trainer", path = "/pulse.trainer.v1.*", priority = 300 }
    inference  = { service = "inference", path = "/pulse.inference.v1.*", priority = 400 }
    lineage    = { service = "lineage", path = "/pulse.lineage.v1.*", priority = 500 }
    drift      = { service = "drift", path = "/pulse.drift.v1.*", priority = 600 }
  }

  # Where each service finds the others: Service Connect client aliases.
  service_urls = {
    for s in ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"] :
    "PULSE_${upper(s)}_URL" => "http://${s}.${var.service_connect_dns_suffix}:${local.grpc_port}"
  }

  environment = {
    for s, cfg in var.services : s => merge(
      local.service_urls,
      var.extra_environment,
      {
        PULSE_LISTEN                 = "0.0.0.0:${local.grpc_port}"
        PULSE_METRICS_LISTEN         = "0.0.0.0:${local.metrics_port}"
        PULSE_LOG_FORMAT             = "json"
        PULSE_LOG_LEVEL              = var.log_level
        PULSE_STATE_DIR              = local.state_dir
        PULSE_S3_BUCKET              = var.s3_bucket
        PULSE_S3_REGION              = var.s3_region
        PULSE_DATABASE_POOL_SIZE     = tostring(cfg.database_pool_size)
        PULSE_SHUTDOWN_DRAIN_SECONDS = tostring(var.shutdown_drain_seconds)
        PULSE_SHUTDOWN_GRACE_SECONDS = tostring(var.shutdown_grace_seconds)
        # Only the owning service runs job workers; the others are told 0
        # explicitly (trainer, inference and drift open the snapshot domain too).
        PULSE_TRAINING_WORKERS   = s == "trainer" ? tostring(cfg.training_workers) : "0"
        PULSE_EXTRACTION_WORKERS = s == "snapshot" ? tostring(cfg.extraction_workers) : "0"
      },
    )
  }

  log_group_names = { for s in local.service_names : s => "${var.log_group_name_prefix}/${s}" }

  # The root filesystem is read-only; Pulse writes its state directory (the
  # admin key it generates when it is given none) and /tmp (object-storage
  # sources are downloaded there). Fargate mounts task volumes owned by
  # root, so a short-lived init container hands them to the Pulse user.
  writable_paths = [local.state_dir, "/tmp"]
  volume_mounts = [
    { sourceVolume = "state", containerPath = local.state_dir, readOnly = false },
    { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
  ]
  # Docker's default capabilities, all dropped but CHOWN.
  init_drop_capabilities = [
    "AUDIT_WRITE", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
  ]

  container_definitions = {
    for s, cfg in var.services : s => [
      {
        name                   = "volume-permissions"
        image                  = local.image
        essential              = false
        user                   = "0"
        entryPoint             = ["/bin/chown"]
        command                = concat([var.container_user], local.writable_paths)
        readonlyRootFilesystem = true
        mountPoints            = local.volume_mounts
        linuxParameters = {
          capabilities = { drop = local.init_drop_capabilities }
        }
        logConfiguration = {
          logDriver = "awslogs"
          options = {
            awslogs-group         = local.log_group_names[s]
            awslogs-region        = local.region
            awslogs-stream-prefix = "init"
          }
        }
      },
      {
        name                   = "pulse"
        image                  = local.image
        essential              = true
        command                = ["serve", s]
        user                   = var.container_user
        readonlyRootFilesystem = true
        mountPoints            = local.volume_mounts
        dependsOn              = [{ containerName = "volume-permissions", condition = "SUCCESS" }]
        portMappings = [
          { name = "grpc", containerPort = local.grpc_port, protocol = "tcp", appProtocol = "grpc" },
          { name = "metrics", containerPort = local.metrics_port, protocol = "tcp", appProtocol = "http" },
        ]
        environment = [for k in sort(keys(local.environment[s])) : { name = k, value = local.environment[s][k] }]
        secrets = [
          for k in sort(keys(var.service_secrets[s])) : { name = k, valueFrom = var.service_secrets[s][k] }
        ]
        healthCheck = {
          command     = ["CMD", "/usr/local/bin/pulse", "health"]
          interval    = 15
          timeout     = 5
          retries     = 3
          startPeriod = 60 # migrations run at start
        }
        # SIGTERM, then drain (health NOT_SERVING) and grace for in-flight calls.
        stopTimeout = min(120, var.shutdown_drain_seconds + var.shutdown_grace_seconds + 10)
        linuxParameters = {
          initProcessEnabled = true
          capabilities       = { drop = ["ALL"] }
        }
        ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
        # Read by the metrics collector's ECS discovery (observability module).
        dockerLabels = {
          ECS_PROMETHEUS_EXPORTER_PORT = tostring(local.metrics_port)
          ECS_PROMETHEUS_JOB_NAME      = s
        }
        logConfiguration = {
          logDriver = "awslogs"
          options = {
            awslogs-group         = local.log_group_names[s]
            awslogs-region        = local.region
            awslogs-stream-prefix = "pulse"
            mode                  = "non-blocking"
            max-buffer-size       = "25m"
          }
        }
      },
    ]
  }
}

# ---- logs ---------------------------------------------------------------------------

resource "aws_kms_key" "logs" {
  description             = "${var.name}: ECS, ECS Exec and WAF logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${var.log_group_name_prefix}/*",
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:aws-waf-logs-${var.name}",
            ]
          }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

resource "aws_cloudwatch_log_group" "service" {
  for_each = local.log_group_names

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_cloudwatch_log_group" "exec" {
  name              = "${var.log_group_name_prefix}/ecs-exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn

  tags = var.tags
}

# ---- cluster ----------------------------------------------------------------------------

resource "aws_service_discovery_http_namespace" "this" {
  name        = var.name
  description = "${var.name}: Service Connect namespace of the Pulse services"

  tags = var.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  # ECS Exec is off on every service; should someone turn it on, sessions
  # are encrypted and logged.
  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.logs.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }

  service_connect_defaults {
    namespace = aws_service_discovery_http_namespace.this.arn
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# ---- tasks and services --------------------------------------------------------------------

resource "aws_ecs_task_definition" "service" {
  for_each = var.services

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = var.execution_role_arns[each.key]
  task_role_arn            = var.task_role_arns[each.key]
  container_definitions    = jsonencode(local.container_definitions[each.key])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "state"
  }

  volume {
    name = "tmp"
  }

  dynamic "ephemeral_storage" {
    for_each = each.value.ephemeral_storage_gib > 20 ? [each.value.ephemeral_storage_gib] : []
    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  tags = merge(var.tags, { Service = each.key })

  depends_on = [aws_cloudwatch_log_group.service]
}

resource "aws_ecs_service" "service" {
  for_each = var.services

  name                              = each.key
  cluster                           = aws_ecs_cluster.this.arn
  task_definition                   = aws_ecs_task_definition.service[each.key].arn
  desired_count                     = each.value.min_count
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 90
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"
  enable_execute_command            = false

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  capacity_provider_strategy {
    capacity_provider = var.capacity_provider
    weight            = 1
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    assign_public_ip = false
    security_groups = concat(
      [var.services_security_group_id],
      contains(var.source_access_services, each.key) ? [var.source_access_security_group_id] : [],
    )
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.service[each.key].arn
    container_name   = "pulse"
    container_port   = local.grpc_port
  }

  service_connect_configuration {
    enabled   = true
    namespace = aws_service_discovery_http_namespace.this.arn

    service {
      port_name      = "grpc"
      discovery_name = each.key

      client_alias {
        port     = local.grpc_port
        dns_name = "${each.key}.${var.service_connect_dns_suffix}"
      }

      # Streams (Arrow batches, PredictStream) outlive the proxy's defaults
      # (15 s per request for gRPC): no per-request limit, one hour idle.
      timeout {
        per_request_timeout_seconds = 0
        idle_timeout_seconds        = 3600
      }
    }

    log_configuration {
      log_driver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "service-connect"
      }
    }
  }

  lifecycle {
    # Autoscaling owns the running count.
    ignore_changes = [desired_count]
  }

  tags = merge(var.tags, { Service = each.key })

  depends_on = [aws_lb_listener_rule.route, aws_ecs_cluster_capacity_providers.this]
}

# ---- autoscaling ------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "service" {
  for_each = var.services

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.service[each.key].name}"
  min_capacity       = each.value.min_count
  max_capacity       = each.value.max_count

  tags = var.tags
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each = var.services

  name               = "${var.name}-${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  for_each = var.services

  name               = "${var.name}-${each.key}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.requests_per_target_per_minute
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.service[each.key].arn_suffix}"
    }
  }
}

# ---- load balancer ------------------------------------------------------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: true in environments/prod, false in dev so the stack can be torn down; scripts/check_terraform.sh asserts prod keeps it on.
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = var.internal
  security_groups            = [var.alb_security_group_id]
  subnets                    = var.internal ? var.private_subnet_ids : var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  enable_http2               = true
  desync_mitigation_mode     = "strictest"
  # Server-streaming calls may be quiet for a while between messages.
  idle_timeout = var.idle_timeout_seconds

  access_logs {
    enabled = true
    bucket  = var.access_logs_bucket
    prefix  = var.access_logs_prefix
  }

  tags = var.tags
}

resource "aws_lb_target_group" "service" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB-to-task traffic is h2c inside private subnets, admitted only from the ALB's security group. Pulse serves TLS only from PEM files (PULSE_TLS_CERT/KEY paths), which Fargate cannot mount from Secrets Manager without an extra init step; see WAIVERS.md.
  for_each = var.services

  name                          = "${var.name}-${each.key}"
  port                          = local.grpc_port
  protocol                      = "HTTP"
  protocol_version              = "GRPC"
  target_type                   = "ip"
  vpc_id                        = var.vpc_id
  deregistration_delay          = 30
  load_balancing_algorithm_type = "least_outstanding_requests"

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/grpc.health.v1.Health/Check"
    matcher             = "0" # gRPC status OK
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "No Pulse service serves this path. gRPC methods are /pulse.<service>.v1.<Service>/<Method>."
      status_code  = "404"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "route" {
  for_each = { for k, r in local.routes : k => r if contains(keys(var.services), r.service) }

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service[each.value.service].arn
  }

  condition {
    path_pattern {
      values = [each.value.path]
    }
  }

  tags = merge(var.tags, { Route = each.key })
}

resource "aws_route53_record" "alb" {
  count = var.dns_zone_id == null ? 0 : 1

  zone_id = var.dns_zone_id
  name    = var.dns_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

# ---- WAF ------------------------------------------------------------------------------------------

resource "aws_wafv2_web_acl" "this" {
  count = var.enable_waf ? 1 : 0

  name  = var.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  # Only rule groups that are safe for binary gRPC bodies: no body-size or
  # XSS/SQLi body inspection (protobuf bytes would trip them).
  rule {
    name     = "aws-ip-reputation"
    priority = 10

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

resource "aws_cloudwatch_log_group" "waf" {
  count = var.enable_waf ? 1 : 0

  name              = "aws-waf-logs-${var.name}" # WAF requires this prefix
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn

  tags = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  # API keys travel in this header: never log them.
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}
