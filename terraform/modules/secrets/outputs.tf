output "master_key_secret_arn" {
  description = "Secret holding PULSE_MASTER_KEY."
  value       = aws_secretsmanager_secret.master_key.arn
}

output "admin_key_secret_arn" {
  description = "Secret holding PULSE_ADMIN_KEY."
  value       = aws_secretsmanager_secret.admin_key.arn
}

output "database_url_secret_arn" {
  description = "Secret holding PULSE_DATABASE_URL."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "kms_key_arn" {
  description = "The customer managed key encrypting the secrets."
  value       = aws_kms_key.secrets.arn
}
