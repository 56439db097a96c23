variable "region" {
  description = "AWS region to deploy to."
  type        = string
}

variable "availability_zones" {
  description = "The availability zones to use (3), in var.region."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 3
    error_message = "prod needs at least 3 availability zones."
  }
}

variable "image_repository" {
  description = "The Pulse image repository (built from docker/Dockerfile), e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/pulse`."
  type        = string
}

variable "image_tag" {
  description = "The image tag to deploy: an immutable version or commit tag, never `latest`."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) for the load balancer's HTTPS listener, covering dns_name."
  type        = string
}

variable "alb_ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the gRPC API on 443 (your clients', office or VPN ranges)."
  type        = list(string)
}

variable "alb_internal" {
  description = "Make the load balancer internal (reachable only from the VPC, its peers and VPN) instead of internet-facing."
  type        = bool
  default     = false
}

variable "source_egress_rules" {
  description = "Source databases the datasource and snapshot services may connect to: one {description, cidr_ipv4, port} per range and port."
  type = list(object({
    description = string
    cidr_ipv4   = string
    port        = number
  }))
  default = []
}

variable "vpc_cidr" {
  description = "The VPC's /16."
  type        = string
  default     = "10.30.0.0/16"
}

variable "db_instance_class" {
  description = "RDS instance class of the metadata database."
  type        = string
  default     = "db.r6g.large"
}

variable "database_require_tls" {
  description = "Force TLS on database connections (rds.force_ssl = 1, sslmode=require in PULSE_DATABASE_URL; false: sslmode=prefer). See terraform/README.md on checking the server's certificate."
  type        = bool
  default     = true
}

variable "log_level" {
  description = "PULSE_LOG_LEVEL for every service."
  type        = string
  default     = "info"
}

variable "dns_zone_id" {
  description = "Route 53 zone in which to create dns_name as an alias of the load balancer; null to manage DNS elsewhere."
  type        = string
  default     = null
}

variable "dns_name" {
  description = "The API's host name (must match certificate_arn), e.g. `pulse.example.com`."
  type        = string
  default     = null
}

variable "alerts_sns_topic_arn" {
  description = "SNS topic for firing Prometheus alerts; null to only show them in Grafana."
  type        = string
  default     = null
}

variable "enable_grafana" {
  description = "Create an Amazon Managed Grafana workspace (needs IAM Identity Center in the account)."
  type        = bool
  default     = true
}
