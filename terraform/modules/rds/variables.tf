variable "name" {
  description = "Name prefix and instance identifier, e.g. `pulse-prod`."
  type        = string
}

variable "subnet_ids" {
  description = "Isolated database subnets, one per AZ (at least two)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group admitting 5432 from the Pulse services only."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version: a major (`16`, minor upgrades then follow automatically) or a full `16.4`."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "RDS instance class, e.g. db.t4g.medium (dev) or db.r6g.large (prod)."
  type        = string
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage, GiB."
  type        = number
  default     = 50
}

variable "max_allocated_storage_gb" {
  description = "Upper bound for storage autoscaling, GiB."
  type        = number
  default     = 500
}

variable "database_name" {
  description = "The database Pulse uses (each service keeps its own schema in it)."
  type        = string
  default     = "pulse"
}

variable "username" {
  description = "Master user name."
  type        = string
  default     = "pulse"
}

variable "multi_az" {
  description = "A synchronous standby in a second AZ with automatic failover (prod)."
  type        = bool
}

variable "deletion_protection" {
  description = "Refuse to delete the instance until this is turned off."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery (1 to 35)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "force_ssl" {
  description = "Set rds.force_ssl: refuse connections without TLS. Pulse's database URL then needs sslmode=require or stricter (modules/stack sets it from database_require_tls)."
  type        = bool
  default     = true
}

variable "log_min_duration_statement_ms" {
  description = "Log statements slower than this many milliseconds (-1 turns it off)."
  type        = number
  default     = 500
}

variable "performance_insights_retention_days" {
  description = "Performance Insights retention: 7 (free) or a multiple of 31 up to 731."
  type        = number
  default     = 7
}

variable "monitoring_interval_seconds" {
  description = "Enhanced monitoring granularity in seconds (1, 5, 10, 15, 30 or 60)."
  type        = number
  default     = 60

  validation {
    condition     = contains([1, 5, 10, 15, 30, 60], var.monitoring_interval_seconds)
    error_message = "monitoring_interval_seconds must be 1, 5, 10, 15, 30 or 60 (0 would turn enhanced monitoring off)."
  }
}

variable "apply_immediately" {
  description = "Apply modifications now instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
