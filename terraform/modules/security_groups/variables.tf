variable "name" {
  description = "Name prefix, e.g. `pulse-prod`."
  type        = string
}

variable "vpc_id" {
  description = "The VPC the groups belong to."
  type        = string
}

variable "alb_ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the load balancer on 443 (and 80, which only redirects). Use your clients' or VPN's ranges; 0.0.0.0/0 makes the API public (it still needs an API key)."
  type        = list(string)

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be a non-empty list of IPv4 CIDR ranges."
  }
}

variable "source_egress_rules" {
  description = "Where the datasource and snapshot tasks may connect to read customers' source databases: one entry per range and port (PostgreSQL 5432, MySQL 3306, SQL Server 1433, …)."
  type = list(object({
    description = string
    cidr_ipv4   = string
    port        = number
  }))
  default = []
}

variable "grpc_port" {
  description = "The services' gRPC port (PULSE_LISTEN)."
  type        = number
  default     = 50051
}

variable "metrics_port" {
  description = "The services' Prometheus port (PULSE_METRICS_LISTEN)."
  type        = number
  default     = 9464
}

variable "database_port" {
  description = "The metadata database's port."
  type        = number
  default     = 5432
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
