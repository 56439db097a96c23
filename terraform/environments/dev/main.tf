# Pulse, development: two AZs behind one NAT gateway, single-AZ PostgreSQL,
# no deletion protection (the stack can be torn down), one task per service
# (Fargate Spot: jobs resume from their last chunk or checkpoint when a task
# is reclaimed).

module "stack" {
  source = "../../modules/stack"

  environment = "dev"

  services = {
    datasource = { cpu = 256, memory = 512, min_count = 1, max_count = 2 }
    snapshot   = { cpu = 512, memory = 1024, min_count = 1, max_count = 2, extraction_workers = 2 }
    trainer    = { cpu = 1024, memory = 4096, min_count = 1, max_count = 2, training_workers = 1 }
    inference  = { cpu = 512, memory = 1024, min_count = 1, max_count = 2, requests_per_target_per_minute = 30000 }
    lineage    = { cpu = 256, memory = 512, min_count = 1, max_count = 2 }
    drift      = { cpu = 256, memory = 512, min_count = 1, max_count = 2 }
  }
  capacity_provider = "FARGATE_SPOT"

  single_nat_gateway                           = true
  deletion_protection                          = false
  force_destroy_buckets                        = true
  artifacts_noncurrent_version_expiration_days = 30
  secrets_recovery_window_in_days              = 7

  database_multi_az                            = false
  database_allocated_storage_gb                = 20
  database_max_allocated_storage_gb            = 100
  database_backup_retention_days               = 7
  database_performance_insights_retention_days = 7
  database_apply_immediately                   = true

  # terraform.tfvars
  availability_zones      = var.availability_zones
  vpc_cidr                = var.vpc_cidr
  alb_ingress_cidrs       = var.alb_ingress_cidrs
  alb_internal            = var.alb_internal
  source_egress_rules     = var.source_egress_rules
  image_repository        = var.image_repository
  image_tag               = var.image_tag
  log_level               = var.log_level
  certificate_arn         = var.certificate_arn
  dns_zone_id             = var.dns_zone_id
  dns_name                = var.dns_name
  database_instance_class = var.db_instance_class
  database_require_tls    = var.database_require_tls
  alerts_sns_topic_arn    = var.alerts_sns_topic_arn
  enable_grafana          = var.enable_grafana
}
