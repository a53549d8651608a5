locals {
  local_api = anytrue([
    var.aws_endpoint_url != null,
    var.dsql_endpoint_url != null,
    var.dynamodb_endpoint_url != null,
  ])

  name = "${var.project_name}-dsql"

  tags = merge(var.tags, {
    Name      = local.name
    Project   = var.project_name
    ManagedBy = "terraform"
  })

  rate_limiter_table = coalesce(var.rate_limiter_table, "${local.name}-rate-limiter")
  conn_lease_table   = coalesce(var.conn_lease_table, "${local.name}-conn-lease")
}

provider "aws" {
  region = var.region

  # A local API has no account, no STS and no instance metadata to ask.
  skip_credentials_validation = local.local_api
  skip_requesting_account_id  = local.local_api
  skip_region_validation      = local.local_api
  skip_metadata_api_check     = local.local_api ? "true" : null
  # The default (25 retries) turns an operation the local API lacks into minutes of waiting.
  max_retries = local.local_api ? 1 : null

  endpoints {
    # coalesce fails when every argument is null: then the provider's default endpoint.
    dsql     = try(coalesce(var.dsql_endpoint_url, var.aws_endpoint_url), null)
    dynamodb = try(coalesce(var.dynamodb_endpoint_url, var.aws_endpoint_url), null)
    sts      = var.aws_endpoint_url
  }
}

resource "aws_dsql_cluster" "this" {
  deletion_protection_enabled = var.deletion_protection
  tags                        = local.tags

  lifecycle {
    # Never replaced or removed by an apply; `cargo xtask infra destroy` is the deliberate way.
    prevent_destroy = true
  }
}

resource "aws_dynamodb_table" "rate_limiter" {
  count = var.create_tables ? 1 : 0

  name         = local.rate_limiter_table
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl_epoch"
    enabled        = true
  }

  tags = local.tags

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_dynamodb_table" "conn_lease" {
  count = var.create_tables ? 1 : 0

  name         = local.conn_lease_table
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl_epoch"
    enabled        = true
  }

  tags = local.tags

  lifecycle {
    prevent_destroy = true
  }
}
