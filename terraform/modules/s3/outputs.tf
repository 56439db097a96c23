output "artifacts_bucket_name" {
  description = "The artifacts bucket (PULSE_S3_BUCKET)."
  value       = aws_s3_bucket.artifacts.id
}

output "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket."
  value       = aws_s3_bucket.artifacts.arn
}

output "artifacts_kms_key_arn" {
  description = "The customer managed key encrypting the artifacts bucket."
  value       = aws_kms_key.artifacts.arn
}

output "logs_bucket_name" {
  description = "The bucket receiving ALB and S3 access logs."
  value       = aws_s3_bucket.logs.id
  # The ALB checks at creation that it may write here.
  depends_on = [aws_s3_bucket_policy.logs]
}

output "alb_log_prefix" {
  description = "Key prefix for ALB access logs in the logs bucket."
  value       = var.alb_log_prefix
}
