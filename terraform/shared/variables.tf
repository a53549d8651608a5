variable "project_name" {
  description = "Project name (config.toml `project.name`): prefix of every resource name and the Project tag."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.project_name))
    error_message = "The project name must be 2-40 characters of lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "region" {
  description = "AWS region of the cluster and the tables (config.toml `project.region`); Aurora DSQL is not offered in every region."
  type        = string
}

variable "create_tables" {
  description = "Create the DynamoDB tables of the distributed rate limiter and connection lease. Only needed when several Temporal instances share the cluster."
  type        = bool
  default     = false
}

variable "rate_limiter_table" {
  description = "Name of the rate-limiter table; null means `<project_name>-dsql-rate-limiter`."
  type        = string
  default     = null
}

variable "conn_lease_table" {
  description = "Name of the connection-lease table; null means `<project_name>-dsql-conn-lease`."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Aurora DSQL deletion protection. Turn it off (and apply) before a destroy; README.md explains."
  type        = bool
  default     = true
}

variable "opensearch_enabled" {
  description = "Create the Amazon OpenSearch Service domain of Temporal's visibility (config.toml `opensearch.create`)."
  type        = bool
  default     = false
}

variable "opensearch_domain_name" {
  description = "Name of the OpenSearch domain; null means `<project_name>-visibility` (the project name cut to 17 characters)."
  type        = string
  default     = null
}

variable "opensearch_engine_version" {
  description = "Engine of the OpenSearch domain; Temporal's Elasticsearch v7 client speaks to OpenSearch 1.x and 2.x."
  type        = string
  default     = "OpenSearch_2.19"
}

variable "opensearch_instance_type" {
  description = "Instance type of the domain's one data node (README.md: what it costs)."
  type        = string
  default     = "t3.small.search"
}

variable "opensearch_volume_size" {
  description = "gp3 EBS volume of the data node, in GiB (10 to 100 for t3.small.search)."
  type        = number
  default     = 10
}

variable "opensearch_principals" {
  description = "IAM principal ARNs allowed to use the domain besides the one applying this module (e.g. the Temporal services' role)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra tags for every resource. Name, Project and ManagedBy are always set and win over these."
  type        = map(string)
  default     = {}
}

# Endpoints of a local AWS API (moto, LocalStack). `cargo xtask infra` fills them from
# AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DSQL and AWS_ENDPOINT_URL_DYNAMODB. When any is set, the
# provider skips the checks only real AWS can answer and gives up after one retry.

variable "aws_endpoint_url" {
  description = "Endpoint for every AWS service (like AWS_ENDPOINT_URL); null means real AWS."
  type        = string
  default     = null
}

variable "dsql_endpoint_url" {
  description = "Endpoint for Aurora DSQL only (like AWS_ENDPOINT_URL_DSQL); wins over aws_endpoint_url."
  type        = string
  default     = null
}

variable "dynamodb_endpoint_url" {
  description = "Endpoint for DynamoDB only (like AWS_ENDPOINT_URL_DYNAMODB); wins over aws_endpoint_url."
  type        = string
  default     = null
}
