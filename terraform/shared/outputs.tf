output "project_name" {
  description = "Project these resources belong to; `cargo xtask infra` refuses a state of another project."
  value       = var.project_name
}

output "region" {
  description = "AWS region of the cluster and the tables."
  value       = var.region
}

output "dsql_cluster_identifier" {
  description = "Aurora DSQL cluster identifier (config.toml `dsql.identifier`)."
  value       = aws_dsql_cluster.this.identifier
}

output "dsql_cluster_arn" {
  description = "Aurora DSQL cluster ARN."
  value       = aws_dsql_cluster.this.arn
}

output "dsql_endpoint" {
  description = "PostgreSQL endpoint of the cluster (config.toml `dsql.endpoint`); the provider has no endpoint attribute, so it is built from the identifier."
  value       = "${aws_dsql_cluster.this.identifier}.dsql.${var.region}.on.aws"
}

output "deletion_protection" {
  description = "Whether Aurora DSQL deletion protection is on."
  value       = aws_dsql_cluster.this.deletion_protection_enabled
}

output "rate_limiter_table" {
  description = "Rate-limiter table name, or an empty string when the tables are not created."
  value       = try(aws_dynamodb_table.rate_limiter[0].name, "")
}

output "conn_lease_table" {
  description = "Connection-lease table name, or an empty string when the tables are not created."
  value       = try(aws_dynamodb_table.conn_lease[0].name, "")
}

output "opensearch_domain_name" {
  description = "Name of the OpenSearch domain, or an empty string when it is not created."
  value       = try(aws_opensearch_domain.visibility[0].domain_name, "")
}

output "opensearch_endpoint" {
  description = "Host of the OpenSearch domain (config.toml `opensearch.endpoint` is https://<this>), or an empty string when it is not created."
  value       = try(aws_opensearch_domain.visibility[0].endpoint, "")
}
