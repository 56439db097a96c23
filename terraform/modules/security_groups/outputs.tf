output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "services_security_group_id" {
  description = "Security group of every Pulse service task."
  value       = aws_security_group.services.id
}

output "source_access_security_group_id" {
  description = "Extra security group of the datasource and snapshot tasks: egress to source databases."
  value       = aws_security_group.source_access.id
}

output "observability_security_group_id" {
  description = "Security group of the metrics collector."
  value       = aws_security_group.observability.id
}

output "database_security_group_id" {
  description = "Security group of the RDS instance."
  value       = aws_security_group.database.id
}
