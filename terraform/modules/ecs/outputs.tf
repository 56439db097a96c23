output "cluster_name" {
  description = "The ECS cluster's name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "The ECS cluster's ARN."
  value       = aws_ecs_cluster.this.arn
}

output "service_names" {
  description = "ECS service name per Pulse service."
  value       = { for s, svc in aws_ecs_service.service : s => svc.name }
}

output "alb_dns_name" {
  description = "The load balancer's DNS name (point your domain at it; clients connect with TLS on 443)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "The load balancer's Route 53 zone id, for alias records."
  value       = aws_lb.this.zone_id
}

output "alb_arn" {
  description = "The load balancer's ARN."
  value       = aws_lb.this.arn
}

output "target_group_arns" {
  description = "gRPC target group ARN per service."
  value       = { for s, tg in aws_lb_target_group.service : s => tg.arn }
}

output "log_group_names" {
  description = "CloudWatch log group per service."
  value       = { for s, lg in aws_cloudwatch_log_group.service : s => lg.name }
}

output "service_connect_namespace_arn" {
  description = "The Cloud Map namespace the services meet in."
  value       = aws_service_discovery_http_namespace.this.arn
}

output "service_urls" {
  description = "The addresses the services reach each other at (PULSE_<SERVICE>_URL)."
  value       = local.service_urls
}

output "logs_kms_key_arn" {
  description = "The key encrypting the service, ECS Exec and WAF logs."
  value       = aws_kms_key.logs.arn
}
