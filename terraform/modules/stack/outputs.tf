output "grpc_endpoint" {
  description = "Where clients connect (PULSE_ENDPOINT for the SDK and CLI)."
  value       = "https://${coalesce(var.dns_name, module.ecs.alb_dns_name)}"
}

output "alb_dns_name" {
  description = "The load balancer's DNS name (for a CNAME or alias record when DNS is managed elsewhere)."
  value       = module.ecs.alb_dns_name
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = module.ecs.cluster_name
}

output "service_names" {
  description = "ECS service per Pulse service."
  value       = module.ecs.service_names
}

output "log_group_names" {
  description = "CloudWatch log group per Pulse service."
  value       = module.ecs.log_group_names
}

output "artifacts_bucket" {
  description = "The artifacts bucket (datasets, models, checkpoints)."
  value       = module.s3.artifacts_bucket_name
}

output "database_address" {
  description = "The metadata database's host name (reachable from the service tasks only)."
  value       = module.rds.address
}

output "admin_key_secret_arn" {
  description = "Secret holding the admin key (`pulse admin …` with PULSE_ADMIN_KEY)."
  value       = module.secrets.admin_key_secret_arn
}

output "master_key_secret_arn" {
  description = "Secret holding the master key."
  value       = module.secrets.master_key_secret_arn
}

output "database_url_secret_arn" {
  description = "Secret holding the database URL."
  value       = module.secrets.database_url_secret_arn
}

output "nat_public_ips" {
  description = "Addresses the services connect from: allow them on source databases outside AWS."
  value       = module.vpc.nat_public_ips
}

output "prometheus_endpoint" {
  description = "The Amazon Managed Prometheus workspace endpoint."
  value       = module.observability.prometheus_endpoint
}

output "grafana_endpoint" {
  description = "The Grafana workspace URL (null when disabled)."
  value       = module.observability.grafana_endpoint
}
