# Least-privilege roles for the six Pulse services. Each service gets its own
# pair, so neither what it can read from S3 nor which secrets ECS hands it is
# shared with another service:
#
# - an execution role, used by ECS to pull the image, write the container's
#   logs and fetch the service's secrets at task start (a single execution
#   role would have to read every secret of every service);
# - a task role, the service's own AWS identity (the AWS SDK default chain).
#
# What each service does with the artifacts bucket (keys `{tenant}/…`):
#
#   service     reads                          writes
#   datasource  -                              -
#   snapshot    datasets                       datasets
#   trainer     datasets, models, checkpoints  models, checkpoints
#   inference   models                         -
#   drift       datasets, models               -
#   lineage     -                              -
#
# Every service may also s3:ListBucket on the bucket: Pulse checks the bucket
# with HeadBucket at start, and HeadBucket is authorised by ListBucket. A
# write also reads (HeadObject) first: writes are write-once, and an existing
# object with the same SHA-256 is a successful retry.
#
# Secrets: PULSE_DATABASE_URL for all; PULSE_MASTER_KEY for every service
# whose process opens the datasource registry (datasource, and through it
# snapshot, trainer, inference and drift; lineage does not);
# PULSE_ADMIN_KEY for datasource only, which hosts the admin API behind the
# load balancer. (Without it the other services generate an unshared
# random admin key, so their copy of the admin API accepts no one.)

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  s3_read = {
    datasource = []
    snapshot   = ["datasets"]
    trainer    = ["datasets", "models", "checkpoints"]
    inference  = ["models"]
    drift      = ["datasets", "models"]
    lineage    = []
  }
  s3_write = {
    datasource = []
    snapshot   = ["datasets"]
    trainer    = ["models", "checkpoints"]
    inference  = []
    drift      = []
    lineage    = []
  }

  secret_arns = {
    PULSE_DATABASE_URL = var.database_url_secret_arn
    PULSE_MASTER_KEY   = var.master_key_secret_arn
    PULSE_ADMIN_KEY    = var.admin_key_secret_arn
  }
  secret_names = {
    datasource = ["PULSE_DATABASE_URL", "PULSE_MASTER_KEY", "PULSE_ADMIN_KEY"]
    snapshot   = ["PULSE_DATABASE_URL", "PULSE_MASTER_KEY"]
    trainer    = ["PULSE_DATABASE_URL", "PULSE_MASTER_KEY"]
    inference  = ["PULSE_DATABASE_URL", "PULSE_MASTER_KEY"]
    drift      = ["PULSE_DATABASE_URL", "PULSE_MASTER_KEY"]
    lineage    = ["PULSE_DATABASE_URL"]
  }
  service_secrets = {
    for service in var.services : service => { for env in local.secret_names[service] : env => local.secret_arns[env] }
  }

  # `123456789012.dkr.ecr.eu-west-1.amazonaws.com/pulse` -> its repository ARN;
  # null for images outside ECR (which need no pull permission here).
  ecr_match = regex("^(?:([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/(.+))?", var.image_repository)
  ecr_repository_arn = local.ecr_match[0] == null ? null : (
    "arn:${local.partition}:ecr:${local.ecr_match[1]}:${local.ecr_match[0]}:repository/${local.ecr_match[2]}"
  )

  ecs_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:*" }
      }
    }]
  })
}

# ---- execution roles ------------------------------------------------------------

resource "aws_iam_role" "execution" {
  for_each = toset(var.services)

  name               = "${var.name}-${each.key}-execution"
  description        = "ECS agent for ${var.name} ${each.key}: image pull, logs, this service's secrets"
  assume_role_policy = local.ecs_trust

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_iam_role_policy" "execution" {
  for_each = toset(var.services)

  name = "start-task"
  role = aws_iam_role.execution[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      # Images outside ECR need no pull permission here.
      [for statement in [
        {
          Sid      = "EcrAuth"
          Effect   = "Allow"
          Action   = "ecr:GetAuthorizationToken"
          Resource = "*" # this action has no resource-level permissions
        },
        {
          Sid      = "EcrPull"
          Effect   = "Allow"
          Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
          Resource = local.ecr_repository_arn
        },
      ] : statement if local.ecr_repository_arn != null],
      [
        {
          Sid      = "Logs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${var.log_group_name_prefix}/${each.key}:*"
        },
        {
          Sid      = "Secrets"
          Effect   = "Allow"
          Action   = "secretsmanager:GetSecretValue"
          Resource = values(local.service_secrets[each.key])
        },
        {
          Sid      = "SecretsKey"
          Effect   = "Allow"
          Action   = "kms:Decrypt"
          Resource = var.secrets_kms_key_arn
          Condition = {
            StringEquals = { "kms:ViaService" = "secretsmanager.${local.region}.amazonaws.com" }
          }
        },
      ],
    )
  })
}

# ---- task roles -------------------------------------------------------------------

resource "aws_iam_role" "task" {
  for_each = toset(var.services)

  name               = "${var.name}-${each.key}-task"
  description        = "${var.name} ${each.key}: the service's own AWS permissions"
  assume_role_policy = local.ecs_trust

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_iam_role_policy" "task_s3" {
  for_each = toset(var.services)

  name = "artifacts"
  role = aws_iam_role.task[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid      = "CheckBucket"
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = var.artifacts_bucket_arn
      }],
      [for statement in [
        {
          Sid      = "Read"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = [for prefix in local.s3_read[each.key] : "${var.artifacts_bucket_arn}/*/${prefix}/*"]
        },
        {
          Sid      = "ReadKey"
          Effect   = "Allow"
          Action   = "kms:Decrypt"
          Resource = var.artifacts_kms_key_arn
          Condition = {
            StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" }
            StringLike   = { "kms:EncryptionContext:aws:s3:arn" = "${var.artifacts_bucket_arn}*" }
          }
        },
      ] : statement if length(local.s3_read[each.key]) > 0],
      [for statement in [
        {
          Sid      = "Write"
          Effect   = "Allow"
          Action   = "s3:PutObject"
          Resource = [for prefix in local.s3_write[each.key] : "${var.artifacts_bucket_arn}/*/${prefix}/*"]
        },
        {
          Sid      = "WriteKey"
          Effect   = "Allow"
          Action   = "kms:GenerateDataKey"
          Resource = var.artifacts_kms_key_arn
          Condition = {
            StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" }
            StringLike   = { "kms:EncryptionContext:aws:s3:arn" = "${var.artifacts_bucket_arn}*" }
          }
        },
      ] : statement if length(local.s3_write[each.key]) > 0],
    )
  })
}
