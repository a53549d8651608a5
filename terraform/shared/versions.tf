# Long-lived AWS resources of a temporal-dsql-deploy project: one Aurora DSQL cluster and, for
# multi-instance deployments, the two DynamoDB tables of the distributed coordination.
#
# Run it through `cargo xtask infra plan|apply|status|output|import|destroy`, which passes the variables
# from config.toml and writes the outputs back. See README.md here for running it by hand.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Local state (terraform.tfstate next to this file unless `init -backend-config=path=...` says
  # otherwise; `cargo xtask infra` keeps it there, or under TDSQL_TF_STATE_DIR). With
  # infra.state.backend = "s3" the xtask writes a backend_override.tf (git-ignored) declaring
  # `backend "s3" {}` and passes bucket, key, region and locking as -backend-config.
  backend "local" {}
}
