output "execution_role_arns" {
  description = "Execution role ARN per service."
  value       = { for service, role in aws_iam_role.execution : service => role.arn }
}

output "task_role_arns" {
  description = "Task role ARN per service."
  value       = { for service, role in aws_iam_role.task : service => role.arn }
}

output "service_secrets" {
  description = "Per service, the environment variables ECS injects from Secrets Manager and their secret ARNs (the same mapping the execution roles are allowed to read)."
  value       = local.service_secrets
}
