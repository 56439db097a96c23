# The secrets Pulse reads from its environment, kept in Secrets Manager under
# one customer managed key and injected into the task definitions as
# `secrets` (so they never appear in a task definition or in Terraform plan
# output):
#   PULSE_MASTER_KEY    64 hex characters; seals datasource credentials at rest
#   PULSE_ADMIN_KEY     bootstraps tenants and API keys
#   PULSE_DATABASE_URL  postgres://…, including the password the rds module generated
#
# The generated values are also in the Terraform state, which is why the
# state bucket must be encrypted and access-controlled (environments/*/providers.tf).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

resource "aws_kms_key" "secrets" {
  description             = "${var.name}: Secrets Manager secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  # Who may decrypt is decided by IAM (the per-service execution roles, with
  # kms:ViaService = Secrets Manager), which the account statement enables.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministration"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_kms_alias" "secrets" {
  name          = "alias/${var.name}-secrets"
  target_key_id = aws_kms_key.secrets.key_id
}

# ---- master key ---------------------------------------------------------------

resource "random_id" "master_key" {
  byte_length = 32
}

resource "aws_secretsmanager_secret" "master_key" {
  #checkov:skip=CKV2_AWS_57:A new master key must be added as PULSE_MASTER_KEY with the old one in PULSE_PREVIOUS_MASTER_KEYS while secrets are re-sealed; a blind rotation Lambda would make every sealed datasource credential unreadable. Rotated by runbook (README).
  name                    = "${var.name}/master-key"
  description             = "PULSE_MASTER_KEY: AES-256-GCM key sealing datasource credentials (64 hex characters)."
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = var.recovery_window_in_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "master_key" {
  secret_id     = aws_secretsmanager_secret.master_key.id
  secret_string = random_id.master_key.hex

  lifecycle {
    # Rotated out of band (see the waiver above): never put an old key back.
    ignore_changes = [secret_string]
  }
}

# ---- admin key ----------------------------------------------------------------

resource "random_password" "admin_key" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "admin_key" {
  #checkov:skip=CKV2_AWS_57:Tasks read PULSE_ADMIN_KEY once at start; a scheduled rotation would leave running tasks on the old key until redeployed. Rotated by runbook (put a new version, then force a new deployment).
  name                    = "${var.name}/admin-key"
  description             = "PULSE_ADMIN_KEY: bootstraps tenants and API keys (pulse admin …)."
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = var.recovery_window_in_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "admin_key" {
  secret_id     = aws_secretsmanager_secret.admin_key.id
  secret_string = random_password.admin_key.result

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# ---- database -----------------------------------------------------------------

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:The password lives inside a URL that RDS's managed rotation cannot rewrite, and tasks read it only at start. Rotated by runbook (new password on the instance and in this secret, then a new deployment).
  name                    = "${var.name}/database-url"
  description             = "PULSE_DATABASE_URL: the metadata database, with its password."
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = var.recovery_window_in_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id = aws_secretsmanager_secret.database_url.id
  secret_string = format(
    "postgres://%s:%s@%s:%d/%s?sslmode=%s",
    var.database_username,
    var.database_password,
    var.database_address,
    var.database_port,
    var.database_name,
    var.database_sslmode,
  )
}
