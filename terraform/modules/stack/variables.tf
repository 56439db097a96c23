# What differs between environments is set in environments/<env>/main.tf;
# what an operator chooses (image, certificate, DNS, ranges, ...) comes from
# that environment's variables. Nothing that protects prod (Multi-AZ,
# deletion protection, bucket force_destroy, task counts) has a default:
# every environment passes it explicitly.

# ---- per environment (environments/<env>/main.tf) ----------------------------------

variable "environment" {
  description = "Environment name, e.g. `dev` or `prod`: resources are named `pulse-<environment>`, and metrics carry it as the `environment` label."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}$", var.environment))
    error_message = "environment must be lower-case letters, digits and hyphens, at most 14 characters (names are pulse-<environment>, at most 20)."
  }
}

variable "services" {
  description = "The Pulse services to run, keyed by service name, with their Fargate size and task counts (min_count is the number of tasks that always run). Unset optional fields take the ecs module's defaults."
  type = map(object({
    cpu                            = number
    memory                         = number
    min_count                      = number
    max_count                      = number
    cpu_target_percent             = optional(number)
    requests_per_target_per_minute = optional(number)
    ephemeral_storage_gib          = optional(number)
    database_pool_size             = optional(number)
    training_workers               = optional(number)
    extraction_workers             = optional(number)
  }))
}

variable "capacity_provider" {
  description = "FARGATE, or FARGATE_SPOT (cheaper; tasks may be reclaimed, jobs resume from their last chunk or checkpoint)."
  type        = string
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper; an AZ outage cuts egress) instead of one per AZ."
  type        = bool
}

variable "deletion_protection" {
  description = "Deletion protection on the database and the load balancer (prod: true)."
  type        = bool
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the non-empty artifacts and logs buckets (dev only; prod: false)."
  type        = bool
}

variable "artifacts_noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted artifact version is kept before it expires."
  type        = number
}

variable "secrets_recovery_window_in_days" {
  description = "Days a deleted secret can still be restored (7 to 30)."
  type        = number
}

variable "database_multi_az" {
  description = "A synchronous PostgreSQL standby in a second AZ with automatic failover (prod: true)."
  type        = bool
}

variable "database_allocated_storage_gb" {
  description = "Initial gp3 storage of the database, GiB."
  type        = number
}

variable "database_max_allocated_storage_gb" {
  description = "Upper bound for the database's storage autoscaling, GiB."
  type        = number
}

variable "database_backup_retention_days" {
  description = "Days of automated database backups and point-in-time recovery (1 to 35)."
  type        = number
}

variable "database_performance_insights_retention_days" {
  description = "Performance Insights retention: 7 (free) or a multiple of 31 up to 731."
  type        = number
}

variable "database_apply_immediately" {
  description = "Apply database modifications now instead of in the maintenance window."
  type        = bool
}

# ---- operator settings (environments/<env>/variables.tf) ---------------------------

variable "availability_zones" {
  description = "The availability zones to use (2 or 3), in the provider's region."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "The VPC's /16."
  type        = string
}

variable "alb_ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the gRPC API on 443."
  type        = list(string)
}

variable "alb_internal" {
  description = "An internal load balancer (reachable only from the VPC, its peers and VPN) instead of an internet-facing one."
  type        = bool
}

variable "source_egress_rules" {
  description = "Source databases the datasource and snapshot services may connect to: one {description, cidr_ipv4, port} per range and port."
  type = list(object({
    description = string
    cidr_ipv4   = string
    port        = number
  }))
}

variable "image_repository" {
  description = "The Pulse image repository (built from docker/Dockerfile)."
  type        = string
}

variable "image_tag" {
  description = "The image tag to deploy: an immutable version or commit tag, never `latest`."
  type        = string

  validation {
    condition     = var.image_tag != "latest" && length(var.image_tag) > 0
    error_message = "image_tag must name an immutable tag (a version or a commit), not latest."
  }
}

variable "log_level" {
  description = "PULSE_LOG_LEVEL for every service."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) for the load balancer's HTTPS listener, covering dns_name."
  type        = string
}

variable "dns_zone_id" {
  description = "Route 53 zone in which to create dns_name as an alias of the load balancer; null to manage DNS elsewhere."
  type        = string
}

variable "dns_name" {
  description = "The API's host name (must match certificate_arn); null to use the load balancer's own name."
  type        = string
}

variable "database_instance_class" {
  description = "RDS instance class of the metadata database."
  type        = string
}

variable "database_require_tls" {
  description = "Force TLS on database connections (rds.force_ssl = 1, sslmode=require in PULSE_DATABASE_URL)."
  type        = bool
}

variable "alerts_sns_topic_arn" {
  description = "SNS topic for firing Prometheus alerts; null to only show them in Grafana."
  type        = string
}

variable "enable_grafana" {
  description = "Create an Amazon Managed Grafana workspace (needs IAM Identity Center in the account)."
  type        = bool
}
