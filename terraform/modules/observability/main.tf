# Metrics for the Pulse services:
#
#   tasks :9464/metrics  <--scrape--  ADOT collector (ECS service)  --remote write-->  Amazon Managed Prometheus
#                                                                                      <--query--  Amazon Managed Grafana
#
# AMP's managed scraper only discovers EKS targets, so the scraper here is
# the AWS Distro for OpenTelemetry collector running as its own ECS service:
# its `ecs_observer` finds every running Pulse task through the ECS API (by
# the ECS_PROMETHEUS_EXPORTER_PORT / ECS_PROMETHEUS_JOB_NAME docker labels
# the ecs module sets), scrapes <task ip>:9464/metrics every 15 s with job =
# the service name (as in observability/prometheus/prometheus.yml, so the
# repository's dashboards and alert rules apply unchanged), and remote-writes
# to the workspace with SigV4.
#
# Alternative without managed services: run Prometheus + Grafana yourself with
# observability/ (the docker-compose stack's configuration) and point a
# Prometheus `file_sd_configs` at a file this same collector config writes.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  collector_log_group = "${var.log_group_name_prefix}/metrics-collector"
  amp_log_group       = "/aws/vendedlogs/prometheus/${var.name}"
  targets_file        = "/tmp/ecs_sd_targets.yaml"

  collector_config = yamlencode({
    extensions = {
      health_check = { endpoint = "127.0.0.1:13133" }
      sigv4auth    = { region = local.region, service = "aps" }
      ecs_observer = {
        cluster_name     = var.cluster_name
        cluster_region   = local.region
        result_file      = local.targets_file
        refresh_interval = "30s"
        docker_labels = [{
          port_label     = "ECS_PROMETHEUS_EXPORTER_PORT"
          job_name_label = "ECS_PROMETHEUS_JOB_NAME"
        }]
      }
    }
    receivers = {
      prometheus = {
        config = {
          global = { scrape_interval = "15s", scrape_timeout = "10s" }
          scrape_configs = [{
            job_name        = "pulse" # replaced by each target's job (the service name)
            file_sd_configs = [{ files = [local.targets_file], refresh_interval = "30s" }]
          }]
        }
      }
    }
    processors = {
      batch = {}
    }
    exporters = {
      prometheusremotewrite = {
        endpoint        = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
        auth            = { authenticator = "sigv4auth" }
        external_labels = { system = "pulse", environment = var.environment }
      }
    }
    service = {
      extensions = ["health_check", "sigv4auth", "ecs_observer"]
      pipelines = {
        metrics = { receivers = ["prometheus"], processors = ["batch"], exporters = ["prometheusremotewrite"] }
      }
    }
  })

  ecs_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:*" }
      }
    }]
  })
}

resource "aws_kms_key" "observability" {
  description             = "${var.name}: Prometheus workspace and metrics collector logs"
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
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.collector_log_group}",
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.amp_log_group}",
            ]
          }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "observability" {
  name          = "alias/${var.name}-observability"
  target_key_id = aws_kms_key.observability.key_id
}

# ---- Amazon Managed Service for Prometheus ------------------------------------------------

resource "aws_cloudwatch_log_group" "amp" {
  name              = local.amp_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn

  tags = var.tags
}

resource "aws_prometheus_workspace" "this" {
  alias       = var.name
  kms_key_arn = aws_kms_key.observability.arn

  logging_configuration {
    log_group_arn = "${aws_cloudwatch_log_group.amp.arn}:*"
  }

  tags = var.tags
}

# The repository's alert rules (observability/prometheus/alerts.yml), evaluated by AMP.
resource "aws_prometheus_rule_group_namespace" "pulse" {
  count = var.alert_rules == null ? 0 : 1

  name         = "pulse"
  workspace_id = aws_prometheus_workspace.this.id
  data         = var.alert_rules
}

# Firing alerts go to an SNS topic (its policy must let aps.amazonaws.com publish).
resource "aws_prometheus_alert_manager_definition" "this" {
  count = var.alerts_sns_topic_arn == null ? 0 : 1

  workspace_id = aws_prometheus_workspace.this.id
  definition = yamlencode({
    alertmanager_config = yamlencode({
      route = {
        receiver        = "sns"
        group_by        = ["alertname", "job"]
        group_wait      = "30s"
        group_interval  = "5m"
        repeat_interval = "4h"
      }
      receivers = [{
        name = "sns"
        sns_configs = [{
          topic_arn = var.alerts_sns_topic_arn
          sigv4     = { region = local.region }
        }]
      }]
    })
  })
}

# ---- metrics collector ----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "collector" {
  name              = local.collector_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.observability.arn

  tags = var.tags
}

resource "aws_iam_role" "collector_execution" {
  name               = "${var.name}-metrics-collector-execution"
  description        = "ECS agent for ${var.name} metrics collector: logs"
  assume_role_policy = local.ecs_trust

  tags = var.tags
}

resource "aws_iam_role_policy" "collector_execution" {
  name = "start-task"
  role = aws_iam_role.collector_execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "Logs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.collector.arn}:*"
    }]
  })
}

resource "aws_iam_role" "collector_task" {
  name               = "${var.name}-metrics-collector-task"
  description        = "${var.name} metrics collector: discover Pulse tasks, remote-write to Prometheus"
  assume_role_policy = local.ecs_trust

  tags = var.tags
}

resource "aws_iam_role_policy" "collector_task" {
  name = "discover-and-write"
  role = aws_iam_role.collector_task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RemoteWrite"
        Effect   = "Allow"
        Action   = "aps:RemoteWrite"
        Resource = aws_prometheus_workspace.this.arn
      },
      {
        Sid      = "ListInCluster"
        Effect   = "Allow"
        Action   = ["ecs:ListTasks", "ecs:ListServices"]
        Resource = "*"
        Condition = {
          ArnEquals = { "ecs:cluster" = var.cluster_arn }
        }
      },
      {
        Sid    = "DescribeInCluster"
        Effect = "Allow"
        Action = ["ecs:DescribeTasks", "ecs:DescribeServices", "ecs:DescribeContainerInstances"]
        Resource = [
          "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${var.cluster_name}/*",
          "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${var.cluster_name}/*",
          "arn:${local.partition}:ecs:${local.region}:${local.account_id}:container-instance/${var.cluster_name}/*",
        ]
      },
      {
        Sid      = "DescribeTaskDefinitions"
        Effect   = "Allow"
        Action   = "ecs:DescribeTaskDefinition"
        Resource = "*" # this action has no resource-level permissions
      },
    ]
  })
}

resource "aws_ecs_task_definition" "collector" {
  family                   = "${var.name}-metrics-collector"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.collector_cpu
  memory                   = var.collector_memory
  execution_role_arn       = aws_iam_role.collector_execution.arn
  task_role_arn            = aws_iam_role.collector_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # ecs_observer writes its target file here; the collector image's user
  # owns nothing else, so the root filesystem stays read-only.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = "volume-permissions"
      image                  = var.init_image
      essential              = false
      user                   = "0"
      entryPoint             = ["/bin/chmod"]
      command                = ["1777", "/tmp"]
      readonlyRootFilesystem = true
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.collector.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "init"
        }
      }
    },
    {
      name      = "collector"
      image     = var.collector_image
      essential = true
      # The image's own user (non-root `aoc`).
      readonlyRootFilesystem = true
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      dependsOn              = [{ containerName = "volume-permissions", condition = "SUCCESS" }]
      environment            = [{ name = "AOT_CONFIG_CONTENT", value = local.collector_config }]
      healthCheck = {
        command     = ["CMD", "/healthcheck"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.collector.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "collector"
        }
      }
    },
  ])

  tags = var.tags
}

resource "aws_ecs_service" "collector" {
  name                    = "metrics-collector"
  cluster                 = var.cluster_arn
  task_definition         = aws_ecs_task_definition.collector.arn
  desired_count           = 1 # one scraper: two would write every sample twice
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  enable_execute_command  = false

  # Never two collectors at once (duplicate samples); a gap of one scrape
  # interval during a deployment is acceptable.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = false
  }

  tags = var.tags
}

# ---- Amazon Managed Grafana -------------------------------------------------------------------

resource "aws_iam_role" "grafana" {
  count = var.enable_grafana ? 1 : 0

  name        = "${var.name}-grafana"
  description = "${var.name} Grafana workspace: query the Prometheus workspace"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "grafana.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
      }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "grafana" {
  count = var.enable_grafana ? 1 : 0

  name = "query-prometheus"
  role = aws_iam_role.grafana[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Query"
        Effect   = "Allow"
        Action   = ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata", "aps:DescribeWorkspace"]
        Resource = aws_prometheus_workspace.this.arn
      },
      {
        Sid      = "ListWorkspaces"
        Effect   = "Allow"
        Action   = "aps:ListWorkspaces"
        Resource = "arn:${local.partition}:aps:${local.region}:${local.account_id}:/workspaces"
      },
    ]
  })
}

resource "aws_grafana_workspace" "this" {
  count = var.enable_grafana ? 1 : 0

  name                     = var.name
  description              = "${var.name}: Pulse dashboards (import observability/grafana/dashboards)"
  account_access_type      = "CURRENT_ACCOUNT"
  authentication_providers = var.grafana_authentication_providers
  permission_type          = "SERVICE_MANAGED"
  data_sources             = ["PROMETHEUS"]
  role_arn                 = aws_iam_role.grafana[0].arn
  grafana_version          = var.grafana_version

  tags = var.tags
}
