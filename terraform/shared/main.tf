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

  # OpenSearch domain names are 3-28 characters: the project name is cut to leave room for the suffix.
  opensearch_domain = coalesce(var.opensearch_domain_name, "${replace(substr(var.project_name, 0, 17), "/-+$/", "")}-visibility")

  # The provider looks at a new (or changed, or deleted) domain for the first time only after a
  # fixed 10 minutes, unless the timeout ends sooner: then it looks once and is done if the domain
  # is ready. AWS takes 15-30 minutes, so the provider's own timeouts stay; a local API (moto)
  # is ready at once, and a short timeout saves the 10 minutes.
  opensearch_timeout = {
    create = local.local_api ? "5s" : "60m"
    update = local.local_api ? "5s" : "180m"
    delete = local.local_api ? "5s" : "90m"
  }
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
    dsql       = try(coalesce(var.dsql_endpoint_url, var.aws_endpoint_url), null)
    dynamodb   = try(coalesce(var.dynamodb_endpoint_url, var.aws_endpoint_url), null)
    iam        = var.aws_endpoint_url
    opensearch = var.aws_endpoint_url
    sts        = var.aws_endpoint_url
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

# Temporal's visibility store when config.toml says `opensearch.create = true`: the smallest
# domain that serves a team (one t3.small.search node, 10 GiB gp3), encrypted at rest and between
# nodes, HTTPS only (TLS 1.2 or later), reachable by the principal that applies this module.
# Temporal signs its requests with SigV4, so no master user or fine-grained access control.

data "aws_caller_identity" "current" {
  count = var.opensearch_enabled ? 1 : 0
}

data "aws_partition" "current" {
  count = var.opensearch_enabled ? 1 : 0
}

# An assumed-role session's ARN is not a valid principal in a resource policy; its role's ARN is.
data "aws_iam_session_context" "current" {
  count = var.opensearch_enabled ? 1 : 0
  arn   = data.aws_caller_identity.current[0].arn
}

resource "aws_opensearch_domain" "visibility" {
  count = var.opensearch_enabled ? 1 : 0

  domain_name    = local.opensearch_domain
  engine_version = var.opensearch_engine_version

  cluster_config {
    instance_type          = var.opensearch_instance_type
    instance_count         = 1
    zone_awareness_enabled = false
  }

  ebs_options {
    ebs_enabled = true
    volume_type = "gp3"
    volume_size = var.opensearch_volume_size
  }

  encrypt_at_rest {
    enabled = true
  }

  node_to_node_encryption {
    enabled = true
  }

  domain_endpoint_options {
    enforce_https       = true
    tls_security_policy = "Policy-Min-TLS-1-2-2019-07"
  }

  access_policies = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = concat([data.aws_iam_session_context.current[0].issuer_arn], var.opensearch_principals) }
      Action    = "es:ESHttp*"
      Resource  = "arn:${data.aws_partition.current[0].partition}:es:${var.region}:${data.aws_caller_identity.current[0].account_id}:domain/${local.opensearch_domain}/*"
    }]
  })

  tags = local.tags

  timeouts {
    create = local.opensearch_timeout.create
    update = local.opensearch_timeout.update
    delete = local.opensearch_timeout.delete
  }

  lifecycle {
    # Holds every workflow's visibility records; `cargo xtask infra destroy` is the deliberate way.
    prevent_destroy = true

    precondition {
      condition     = can(regex("^[a-z][a-z0-9-]{1,26}[a-z0-9]$", local.opensearch_domain))
      error_message = "The OpenSearch domain name must be 3-28 lower-case letters, digits and hyphens, starting with a letter; set opensearch_domain_name in terraform.tfvars."
    }
  }
}
