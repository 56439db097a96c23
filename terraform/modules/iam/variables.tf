variable "name" {
  description = "Name prefix, e.g. `pulse-prod`; roles are `<name>-<service>-execution` and `<name>-<service>-task`."
  type        = string
}

variable "services" {
  description = "The Pulse services to create roles for."
  type        = list(string)
  default     = ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"]

  validation {
    condition     = alltrue([for s in var.services : contains(["datasource", "snapshot", "trainer", "inference", "lineage", "drift"], s)])
    error_message = "services may only name datasource, snapshot, trainer, inference, lineage and drift."
  }
}

variable "image_repository" {
  description = "The Pulse image repository; when it is an ECR repository, the execution roles may pull from it (and only it)."
  type        = string
}

variable "log_group_name_prefix" {
  description = "The services' CloudWatch log groups are `<prefix>/<service>` (as the ecs module creates them)."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket."
  type        = string
}

variable "artifacts_kms_key_arn" {
  description = "The key encrypting the artifacts bucket."
  type        = string
}

variable "master_key_secret_arn" {
  description = "Secret holding PULSE_MASTER_KEY."
  type        = string
}

variable "admin_key_secret_arn" {
  description = "Secret holding PULSE_ADMIN_KEY."
  type        = string
}

variable "database_url_secret_arn" {
  description = "Secret holding PULSE_DATABASE_URL."
  type        = string
}

variable "secrets_kms_key_arn" {
  description = "The key encrypting the secrets."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
