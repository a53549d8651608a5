//! `tdsql-ops bootstrap-state`: the S3 bucket (and optionally the DynamoDB lock table) that
//! holds the team's Terraform state, made the way the state needs it: versioned (an overwritten
//! state can be recovered), encrypted by default, no public access.
//!
//! Idempotent: what exists is checked and, where a setting is missing, brought in line; one line
//! per step on stdout says which. A bucket of another account, or a lock table with another key,
//! is an error that names the key to change.

use anyhow::{Context as _, Result, bail};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use clap::Args;

/// The hash key Terraform's S3 backend locks with (`dynamodb_table`).
const LOCK_KEY: &str = "LockID";

/// Arguments of `tdsql-ops bootstrap-state`.
#[derive(Debug, Args)]
pub(crate) struct BootstrapStateArgs {
    /// Region of the bucket (and the lock table)
    #[arg(long)]
    region: String,
    /// The state bucket (infra.state.bucket)
    #[arg(long)]
    bucket: String,
    /// DynamoDB lock table (infra.state.lock_table); without it the S3 lock file is used
    #[arg(long)]
    lock_table: Option<String>,
}

impl BootstrapStateArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .load()
            .await;
        // A local API (moto, MinIO) serves buckets by path, not as <bucket>.<host>.
        let local = std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty())
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(local).build();
        let s3 = aws_sdk_s3::Client::from_conf(s3_config);
        bucket(&s3, &self.bucket, &self.region).await?;
        if let Some(table) = &self.lock_table {
            lock_table(&aws_sdk_dynamodb::Client::new(&config), table).await?;
        }
        Ok(())
    }
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str) -> Result<()> {
    let created = match s3.head_bucket().bucket(name).send().await {
        Ok(_) => {
            println!("bucket      {name}: exists, checking its settings");
            false
        }
        Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            let mut create = s3.create_bucket().bucket(name);
            // us-east-1 is the default location and refuses to be named.
            if region != "us-east-1" {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region))
                        .build(),
                );
            }
            create.send().await.map_err(|err| {
                anyhow::anyhow!("CreateBucket {name} failed: {}", DisplayErrorContext(&err))
            })?;
            println!("bucket      {name}: created in {region}");
            true
        }
        Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 403) => bail!(
            "bucket `{name}` exists but these credentials may not use it (S3 bucket names are global: another \
             account may own it); choose another infra.state.bucket"
        ),
        Err(err) => bail!("HeadBucket {name} failed: {}", DisplayErrorContext(&err)),
    };

    // A new bucket is never versioned.
    let versioned = !created && versioning_status(s3, name).await?.as_deref() == Some("Enabled");
    if versioned {
        println!("versioning  Enabled (was already)");
    } else {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!("PutBucketVersioning {name} failed: {}", DisplayErrorContext(&err))
            })?;
        println!("versioning  Enabled (turned on)");
    }

    let encryption = match s3.get_bucket_encryption().bucket(name).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_owned()),
        Err(err) if err.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
        Err(err) => bail!("GetBucketEncryption {name} failed: {}", DisplayErrorContext(&err)),
    };
    if let Some(algorithm) = encryption {
        // A rule someone chose (a KMS key, say) is kept.
        println!("encryption  {algorithm} by default (was already)");
    } else {
        let by_default =
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build()?;
        let rule =
            ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build();
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder().rules(rule).build()?,
            )
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!("PutBucketEncryption {name} failed: {}", DisplayErrorContext(&err))
            })?;
        println!("encryption  AES256 by default (turned on)");
    }

    let blocked = match s3.get_public_access_block().bucket(name).send().await {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(err) if err.code() == Some("NoSuchPublicAccessBlockConfiguration") => false,
        Err(err) => bail!("GetPublicAccessBlock {name} failed: {}", DisplayErrorContext(&err)),
    };
    if blocked {
        println!("public      all public access blocked (was already)");
    } else {
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!("PutPublicAccessBlock {name} failed: {}", DisplayErrorContext(&err))
            })?;
        println!("public      all public access blocked (turned on)");
    }
    Ok(())
}

/// `GetBucketVersioning`'s status. moto (5.2.5) names the answer's root element
/// `GetBucketVersioningResponse` instead of S3's `VersioningConfiguration`, which the SDK refuses
/// to decode: a 200 answer it cannot decode is read for its `<Status>` by hand.
async fn versioning_status(s3: &aws_sdk_s3::Client, name: &str) -> Result<Option<String>> {
    match s3.get_bucket_versioning().bucket(name).send().await {
        Ok(out) => Ok(out.status().map(|s| s.as_str().to_owned())),
        Err(err) => {
            if let Some(raw) = err.raw_response().filter(|r| r.status().as_u16() == 200)
                && let Some(body) = raw.body().bytes().and_then(|b| std::str::from_utf8(b).ok())
            {
                let status = body.split_once("<Status>").and_then(|(_, rest)| rest.split_once("</Status>"));
                return Ok(status.map(|(status, _)| status.to_owned()));
            }
            bail!("GetBucketVersioning {name} failed: {}", DisplayErrorContext(&err))
        }
    }
}

async fn lock_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    match dynamodb.describe_table().table_name(name).send().await {
        Ok(out) => {
            let table = out.table().with_context(|| format!("DescribeTable {name} returned no table"))?;
            let hash = table.key_schema().iter().find(|k| k.key_type() == &KeyType::Hash);
            let key_type = table
                .attribute_definitions()
                .iter()
                .find(|a| hash.is_some_and(|h| h.attribute_name() == a.attribute_name()))
                .map(|a| a.attribute_type().clone());
            if hash.map(KeySchemaElement::attribute_name) != Some(LOCK_KEY)
                || key_type != Some(ScalarAttributeType::S)
                || table.key_schema().len() != 1
            {
                bail!(
                    "table `{name}` exists but its key is not the string hash key `{LOCK_KEY}` that terraform locks \
                     with; name another infra.state.lock_table, or leave it empty to lock with S3's lock file"
                );
            }
            println!("lock table  {name}: exists, hash key {LOCK_KEY} (S)");
        }
        Err(err)
            if err.as_service_error().is_some_and(DescribeTableError::is_resource_not_found_exception) =>
        {
            dynamodb
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(LOCK_KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()?,
                )
                .key_schema(
                    KeySchemaElement::builder().attribute_name(LOCK_KEY).key_type(KeyType::Hash).build()?,
                )
                .send()
                .await
                .map_err(|err| anyhow::anyhow!("CreateTable {name} failed: {}", DisplayErrorContext(&err)))?;
            wait_active(dynamodb, name).await?;
            println!("lock table  {name}: created, hash key {LOCK_KEY} (S), on-demand");
        }
        Err(err) => bail!("DescribeTable {name} failed: {}", DisplayErrorContext(&err)),
    }
    Ok(())
}

/// A new table takes seconds to become ACTIVE; terraform's first lock would fail before that.
async fn wait_active(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    for _ in 0..60 {
        let out =
            dynamodb.describe_table().table_name(name).send().await.map_err(|err| {
                anyhow::anyhow!("DescribeTable {name} failed: {}", DisplayErrorContext(&err))
            })?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    bail!("table `{name}` was created but is not ACTIVE after 60 s; run the command again in a minute")
}
