# One Pulse environment: the network, security groups, buckets, secrets,
# database, IAM roles, ECS services and observability, wired together.
# environments/<env>/main.tf calls this once with that environment's values.

locals {
  name                  = "pulse-${var.environment}"
  log_group_name_prefix = "/ecs/${local.name}"
  database_name         = "pulse"
  database_username     = "pulse"

  alert_rules_file = "${path.module}/../../../observability/prometheus/alerts.yml"
}

data "aws_region" "current" {}

module "vpc" {
  source = "../vpc"

  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
}

module "security_groups" {
  source = "../security_groups"

  name                = local.name
  vpc_id              = module.vpc.vpc_id
  alb_ingress_cidrs   = var.alb_ingress_cidrs
  source_egress_rules = var.source_egress_rules
}

module "s3" {
  source = "../s3"

  name                               = local.name
  noncurrent_version_expiration_days = var.artifacts_noncurrent_version_expiration_days
  log_retention_days                 = 365
  force_destroy                      = var.force_destroy_buckets
}

module "secrets" {
  source = "../secrets"

  name                    = local.name
  recovery_window_in_days = var.secrets_recovery_window_in_days
  database_username       = local.database_username
  database_name           = local.database_name
  database_address        = module.rds.address
  database_password       = module.rds.password
  database_port           = module.rds.port
  database_sslmode        = var.database_require_tls ? "require" : "prefer"
}

module "rds" {
  source = "../rds"

  name                                = local.name
  subnet_ids                          = module.vpc.database_subnet_ids
  security_group_id                   = module.security_groups.database_security_group_id
  instance_class                      = var.database_instance_class
  allocated_storage_gb                = var.database_allocated_storage_gb
  max_allocated_storage_gb            = var.database_max_allocated_storage_gb
  database_name                       = local.database_name
  username                            = local.database_username
  multi_az                            = var.database_multi_az
  deletion_protection                 = var.deletion_protection
  backup_retention_days               = var.database_backup_retention_days
  force_ssl                           = var.database_require_tls
  performance_insights_retention_days = var.database_performance_insights_retention_days
  apply_immediately                   = var.database_apply_immediately
}

module "iam" {
  source = "../iam"

  name                    = local.name
  services                = keys(var.services)
  image_repository        = var.image_repository
  log_group_name_prefix   = local.log_group_name_prefix
  artifacts_bucket_arn    = module.s3.artifacts_bucket_arn
  artifacts_kms_key_arn   = module.s3.artifacts_kms_key_arn
  master_key_secret_arn   = module.secrets.master_key_secret_arn
  admin_key_secret_arn    = module.secrets.admin_key_secret_arn
  database_url_secret_arn = module.secrets.database_url_secret_arn
  secrets_kms_key_arn     = module.secrets.kms_key_arn
}

module "ecs" {
  source = "../ecs"

  name              = local.name
  services          = var.services
  image_repository  = var.image_repository
  image_tag         = var.image_tag
  log_level         = var.log_level
  capacity_provider = var.capacity_provider

  vpc_id                          = module.vpc.vpc_id
  private_subnet_ids              = module.vpc.private_subnet_ids
  public_subnet_ids               = module.vpc.public_subnet_ids
  services_security_group_id      = module.security_groups.services_security_group_id
  source_access_security_group_id = module.security_groups.source_access_security_group_id
  alb_security_group_id           = module.security_groups.alb_security_group_id

  execution_role_arns = module.iam.execution_role_arns
  task_role_arns      = module.iam.task_role_arns
  service_secrets     = module.iam.service_secrets

  s3_bucket             = module.s3.artifacts_bucket_name
  s3_region             = data.aws_region.current.name
  log_group_name_prefix = local.log_group_name_prefix
  log_retention_days    = 365

  internal            = var.alb_internal
  certificate_arn     = var.certificate_arn
  deletion_protection = var.deletion_protection
  access_logs_bucket  = module.s3.logs_bucket_name
  access_logs_prefix  = module.s3.alb_log_prefix
  enable_waf          = true
  dns_zone_id         = var.dns_zone_id
  dns_name            = var.dns_name
}

module "observability" {
  source = "../observability"

  name                  = local.name
  environment           = var.environment
  cluster_name          = module.ecs.cluster_name
  cluster_arn           = module.ecs.cluster_arn
  private_subnet_ids    = module.vpc.private_subnet_ids
  security_group_id     = module.security_groups.observability_security_group_id
  log_group_name_prefix = local.log_group_name_prefix
  log_retention_days    = 365
  alert_rules           = fileexists(local.alert_rules_file) ? file(local.alert_rules_file) : null
  alerts_sns_topic_arn  = var.alerts_sns_topic_arn
  enable_grafana        = var.enable_grafana
}
