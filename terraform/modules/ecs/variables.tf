variable "name" {
  description = "Name prefix for the cluster, load balancer and the rest, e.g. `pulse-prod` (at most 20 characters: target group names are `<name>-<service>`)."
  type        = string

  validation {
    condition     = length(var.name) <= 20 && can(regex("^[a-z][a-z0-9-]*$", var.name))
    error_message = "name must be lower-case letters, digits and hyphens, at most 20 characters."
  }
}

variable "services" {
  description = "The Pulse services to run, keyed by service name (datasource, snapshot, trainer, inference, lineage, drift), with their Fargate size and scaling bounds. `training_workers` applies to trainer and `extraction_workers` to snapshot only; the other services get 0 of each."
  type = map(object({
    cpu                            = number
    memory                         = number
    min_count                      = number
    max_count                      = number
    cpu_target_percent             = optional(number, 60)
    requests_per_target_per_minute = optional(number, 3000)
    ephemeral_storage_gib          = optional(number, 20)
    database_pool_size             = optional(number, 10)
    training_workers               = optional(number, 1)
    extraction_workers             = optional(number, 2)
  }))

  validation {
    condition     = alltrue([for s in keys(var.services) : contains(["datasource", "snapshot", "trainer", "inference", "lineage", "drift"], s)])
    error_message = "services may only name datasource, snapshot, trainer, inference, lineage and drift."
  }

  validation {
    condition     = contains(keys(var.services), "datasource")
    error_message = "services must include datasource: the admin API and the load balancer's health route go to it."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.min_count >= 1 && s.max_count >= s.min_count])
    error_message = "Every service needs min_count >= 1 and max_count >= min_count."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.ephemeral_storage_gib >= 20 && s.ephemeral_storage_gib <= 200])
    error_message = "ephemeral_storage_gib must be between 20 (the Fargate default) and 200."
  }
}

variable "image_repository" {
  description = "The Pulse image repository (docker/Dockerfile), e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/pulse`."
  type        = string
}

variable "image_tag" {
  description = "The image tag to deploy; an immutable tag (a version or a commit) rather than `latest`."
  type        = string
}

variable "container_user" {
  description = "uid:gid the Pulse container runs as; the image's non-root `pulse` user is 10001:10001."
  type        = string
  default     = "10001:10001"

  validation {
    condition     = can(regex("^[1-9][0-9]*:[1-9][0-9]*$", var.container_user))
    error_message = "container_user must be a numeric, non-root uid:gid such as 10001:10001."
  }
}

variable "log_level" {
  description = "PULSE_LOG_LEVEL: a tracing filter such as `info` or `pulse_trainer=debug,info`."
  type        = string
  default     = "info"
}

variable "extra_environment" {
  description = "More PULSE_* settings for every service (see services/common/src/config.rs), e.g. PULSE_INFERENCE_CACHE_ENTRIES. The settings this module sets itself take precedence."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : startswith(k, "PULSE_") && !contains(["PULSE_MASTER_KEY", "PULSE_ADMIN_KEY", "PULSE_DATABASE_URL"], k)])
    error_message = "extra_environment keys must be PULSE_* settings, and secrets (PULSE_MASTER_KEY, PULSE_ADMIN_KEY, PULSE_DATABASE_URL) never go here."
  }
}

variable "shutdown_drain_seconds" {
  description = "PULSE_SHUTDOWN_DRAIN_SECONDS: after SIGTERM, seconds of NOT_SERVING health before the listener closes."
  type        = number
  default     = 5
}

variable "shutdown_grace_seconds" {
  description = "PULSE_SHUTDOWN_GRACE_SECONDS: seconds in-flight calls get to finish after the drain."
  type        = number
  default     = 30
}

variable "cpu_architecture" {
  description = "Fargate CPU architecture of the image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "capacity_provider" {
  description = "FARGATE, or FARGATE_SPOT (cheaper, tasks may be reclaimed with two minutes' notice; jobs resume from their last chunk or checkpoint)."
  type        = string
  default     = "FARGATE"

  validation {
    condition     = contains(["FARGATE", "FARGATE_SPOT"], var.capacity_provider)
    error_message = "capacity_provider must be FARGATE or FARGATE_SPOT."
  }
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the tasks (and for an internal load balancer)."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for an internet-facing load balancer."
  type        = list(string)
}

variable "services_security_group_id" {
  description = "Security group of every service task."
  type        = string
}

variable "source_access_security_group_id" {
  description = "Extra security group (egress to source databases) for the services in source_access_services."
  type        = string
}

variable "source_access_services" {
  description = "The services that connect to customers' source databases."
  type        = list(string)
  default     = ["datasource", "snapshot"]
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "execution_role_arns" {
  description = "Execution role ARN per service (iam module)."
  type        = map(string)
}

variable "task_role_arns" {
  description = "Task role ARN per service (iam module)."
  type        = map(string)
}

variable "service_secrets" {
  description = "Per service, environment variable name -> Secrets Manager ARN to inject (iam module)."
  type        = map(map(string))
}

variable "s3_bucket" {
  description = "PULSE_S3_BUCKET: the artifacts bucket."
  type        = string
}

variable "s3_region" {
  description = "PULSE_S3_REGION: the artifacts bucket's region."
  type        = string
}

variable "log_group_name_prefix" {
  description = "Log groups are `<prefix>/<service>`; the iam module grants writes under the same names."
  type        = string
}

variable "log_retention_days" {
  description = "Days to keep container, Service Connect, ECS Exec and WAF logs."
  type        = number
  default     = 365
}

variable "service_connect_dns_suffix" {
  description = "Services reach each other at `<service>.<suffix>:50051` (PULSE_<SERVICE>_URL)."
  type        = string
  default     = "pulse.local"
}

variable "internal" {
  description = "An internal load balancer (private subnets, reachable from the VPC and its peers/VPN) instead of an internet-facing one."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener (the name clients connect to)."
  type        = string
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (prod)."
  type        = bool
  default     = true
}

variable "idle_timeout_seconds" {
  description = "Load balancer idle timeout: how long a connection or stream may carry nothing."
  type        = number
  default     = 300
}

variable "access_logs_bucket" {
  description = "Bucket for the load balancer's access logs (SSE-S3; see the s3 module)."
  type        = string
}

variable "access_logs_prefix" {
  description = "Key prefix of the access logs in that bucket."
  type        = string
  default     = "alb"
}

variable "enable_waf" {
  description = "Put an AWS WAF web ACL (IP reputation and known-bad-input rules, authorization header redacted from its logs) in front of the load balancer."
  type        = bool
  default     = true
}

variable "dns_zone_id" {
  description = "Route 53 zone to create `dns_name` in as an alias of the load balancer; null for none."
  type        = string
  default     = null
}

variable "dns_name" {
  description = "The name clients use (matching certificate_arn), e.g. `pulse.example.com`; used with dns_zone_id."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
