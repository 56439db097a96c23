output "address" {
  description = "The instance's DNS name."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "The instance's port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "The database Pulse uses."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "The master user name."
  value       = aws_db_instance.this.username
}

output "instance_id" {
  description = "The RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

output "kms_key_arn" {
  description = "The customer managed key encrypting storage, snapshots and Performance Insights."
  value       = aws_kms_key.rds.arn
}

output "password" {
  description = "The generated master password (for the secrets module's PULSE_DATABASE_URL)."
  value       = random_password.master.result
  sensitive   = true
}
