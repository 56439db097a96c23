# The stack's outputs (descriptions in modules/stack/outputs.tf).

output "grpc_endpoint" {
  value = module.stack.grpc_endpoint
}

output "alb_dns_name" {
  value = module.stack.alb_dns_name
}

output "cluster_name" {
  value = module.stack.cluster_name
}

output "service_names" {
  value = module.stack.service_names
}

output "log_group_names" {
  value = module.stack.log_group_names
}

output "artifacts_bucket" {
  value = module.stack.artifacts_bucket
}

output "database_address" {
  value = module.stack.database_address
}

output "admin_key_secret_arn" {
  value = module.stack.admin_key_secret_arn
}

output "master_key_secret_arn" {
  value = module.stack.master_key_secret_arn
}

output "database_url_secret_arn" {
  value = module.stack.database_url_secret_arn
}

output "nat_public_ips" {
  value = module.stack.nat_public_ips
}

output "prometheus_endpoint" {
  value = module.stack.prometheus_endpoint
}

output "grafana_endpoint" {
  value = module.stack.grafana_endpoint
}
