variable "name" {
  description = "Name prefix, e.g. `pulse-prod`."
  type        = string
}

variable "environment" {
  description = "Environment name, added to every sample as the `environment` label (e.g. dev, prod)."
  type        = string
}

variable "cluster_name" {
  description = "The ECS cluster the Pulse services run in (scraped, and where the collector runs)."
  type        = string
}

variable "cluster_arn" {
  description = "ARN of that cluster."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the collector task."
  type        = list(string)
}

variable "security_group_id" {
  description = "The observability security group (allowed to reach the services' 9464)."
  type        = string
}

variable "log_group_name_prefix" {
  description = "The collector logs to `<prefix>/metrics-collector`."
  type        = string
}

variable "log_retention_days" {
  description = "Days to keep the collector's and the Prometheus workspace's logs."
  type        = number
  default     = 365
}

variable "collector_image" {
  description = "AWS Distro for OpenTelemetry collector image (pin a version; it includes ecs_observer, sigv4auth and prometheusremotewrite)."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
}

variable "init_image" {
  description = "Image of the init container that makes the collector's /tmp volume writable (needs /bin/chmod; public, so the collector's execution role needs no registry permissions)."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.37"
}

variable "collector_cpu" {
  description = "Fargate CPU units of the collector task."
  type        = number
  default     = 256
}

variable "collector_memory" {
  description = "Fargate memory (MiB) of the collector task."
  type        = number
  default     = 512
}

variable "alert_rules" {
  description = "Prometheus alerting rules (the text of observability/prometheus/alerts.yml) for the workspace to evaluate; null for none."
  type        = string
  default     = null
}

variable "alerts_sns_topic_arn" {
  description = "SNS topic that firing alerts are sent to (its policy must allow aps.amazonaws.com to publish); null to only show them in Grafana."
  type        = string
  default     = null
}

variable "enable_grafana" {
  description = "Create an Amazon Managed Grafana workspace. It needs IAM Identity Center (or SAML) in the account; turn it off to use your own Grafana against the Prometheus workspace."
  type        = bool
  default     = true
}

variable "grafana_authentication_providers" {
  description = "How users sign in to Grafana: AWS_SSO (IAM Identity Center) and/or SAML."
  type        = list(string)
  default     = ["AWS_SSO"]
}

variable "grafana_version" {
  description = "Amazon Managed Grafana version."
  type        = string
  default     = "10.4"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
