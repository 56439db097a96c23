output "prometheus_workspace_id" {
  description = "The Amazon Managed Service for Prometheus workspace."
  value       = aws_prometheus_workspace.this.id
}

output "prometheus_endpoint" {
  description = "The workspace's Prometheus-compatible endpoint (query with SigV4, e.g. awscurl or Grafana's SigV4 data source)."
  value       = aws_prometheus_workspace.this.prometheus_endpoint
}

output "grafana_endpoint" {
  description = "URL of the Grafana workspace (null when disabled)."
  value       = var.enable_grafana ? "https://${aws_grafana_workspace.this[0].endpoint}" : null
}

output "collector_service_name" {
  description = "ECS service name of the metrics collector."
  value       = aws_ecs_service.collector.name
}
