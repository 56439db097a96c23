variable "name" {
  description = "Name prefix, e.g. `pulse-prod`; buckets are `<name>-artifacts-<account id>` and `<name>-logs-<account id>`."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted artifact version is kept before it expires. Pulse never overwrites a committed object, so this only bounds recovery of deletions."
  type        = number
  default     = 90
}

variable "log_retention_days" {
  description = "Days to keep ALB and S3 access logs in the logs bucket."
  type        = number
  default     = 365
}

variable "alb_log_prefix" {
  description = "Key prefix the ALB writes its access logs under in the logs bucket."
  type        = string
  default     = "alb"
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete non-empty buckets (dev only; never in prod)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
