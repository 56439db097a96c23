terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: the state bucket and its region are per account,
  # so they come from backend.hcl (copy backend.hcl.example):
  #   terraform init -backend-config=backend.hcl
  # The state holds the generated secrets (master key, admin key, database
  # password): keep the bucket private, versioned and SSE-KMS encrypted.
  backend "s3" {
    key          = "pulse/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true # S3-native state locking (Terraform >= 1.10); no DynamoDB table
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "pulse"
      Environment = "prod"
      ManagedBy   = "terraform"
    }
  }
}
