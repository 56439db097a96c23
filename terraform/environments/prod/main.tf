# Pulse, production: three AZs with a NAT gateway each, Multi-AZ PostgreSQL,
# deletion protection on the database and the load balancer, at least two
# tasks of every service (three of inference).

module "stack" {
  source = "../../modules/stack"

  environment = "prod"

  services = {
    datasource = { cpu = 512, memory = 1024, min_count = 2, max_count = 6 }
    snapshot   = { cpu = 2048, memory = 4096, min_count = 2, max_count = 8, extraction_workers = 2, ephemeral_storage_gib = 50 }
    # Training uses every core it is given: one job per task, scaled out by tasks.
    trainer   = { cpu = 4096, memory = 16384, min_count = 2, max_count = 10, training_workers = 1, ephemeral_storage_gib = 50 }
    inference = { cpu = 1024, memory = 2048, min_count = 3, max_count = 20, cpu_target_percent = 50, requests_per_target_per_minute = 60000 }
    lineage   = { cpu = 512, memory = 1024, min_count = 2, max_count = 6 }
    drift     = { cpu = 1024, memory = 2048, min_count = 2, max_count = 4 }
  }
  capacity_provider = "FARGATE"

  # scripts/check_terraform.sh asserts database_multi_az, deletion_protection
  # and force_destroy_buckets here (the checkov waivers in WAIVERS.md rely on them).
  single_nat_gateway                           = false
  deletion_protection                          = true
  force_destroy_buckets                        = false
  artifacts_noncurrent_version_expiration_days = 90
  secrets_recovery_window_in_days              = 30

  database_multi_az                            = true
  database_allocated_storage_gb                = 100
  database_max_allocated_storage_gb            = 1000
  database_backup_retention_days               = 30
  database_performance_insights_retention_days = 31
  database_apply_immediately                   = false

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
