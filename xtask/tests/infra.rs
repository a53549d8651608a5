//! `cargo xtask infra` against real Terraform with the local AWS provider and the harness's moto
//! server. Every test has a sandbox of its own (config file through `TDSQL_CONFIG_FILE`, state
//! and working data through `TDSQL_TF_STATE_DIR`), so the repository's config.toml and state are
//! never touched and the tests run in parallel. Terraform runs cost ~10 s each here, so the
//! Terraform-backed behaviour is checked in three short sequences rather than many small tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aws_sdk_dsql::operation::get_cluster::GetClusterError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;

const REGION: &str = "us-east-1";

/// A private directory with a config file and a Terraform state directory.
struct Sandbox {
    dir: PathBuf,
    project: String,
}

impl Sandbox {
    fn new(label: &str) -> Self {
        let project = format!("t{}-{label}", std::process::id());
        let dir = std::env::temp_dir().join(format!("tdsql-infra-{project}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(dir.join("tf")).unwrap();
        Self { dir, project }
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("tf")
    }

    /// A commented config of the kind `config init` writes, with the coordination tables on or off.
    fn write_config(&self, tables: bool, region: &str) {
        let text = format!(
            "# Project settings (kept by the test: comments must survive the write-back).\n\
             [project]\n\
             name = \"{}\"  # resource prefix\n\
             region = \"{region}\"\n\
             \n\
             [coordination.rate_limiter]\n\
             # Only needed when several Temporal instances share the cluster.\n\
             enabled = {tables}\n",
            self.project
        );
        std::fs::write(self.config_file(), text).unwrap();
    }

    /// Terraform variables the xtask does not set: deletion protection off so destroy can finish.
    fn write_tfvars(&self, text: &str) {
        std::fs::write(self.state_dir().join("terraform.tfvars"), text).unwrap();
    }

    /// The xtask binary with the sandbox, moto and the harness's Terraform in its environment.
    fn xtask(&self, args: &[&str]) -> Command {
        let (terraform, cli_config) = tdsql_test_support::terraform();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        // The developer's own overrides (TDSQL_PROJECT_NAME, AWS_REGION, ...) must not leak in.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TDSQL_") || key.starts_with("AWS_") || key.starts_with("TF_") {
                cmd.env_remove(&*key);
            }
        }
        cmd.args(args)
            .env("TDSQL_CONFIG_FILE", self.config_file())
            .env("TDSQL_TF_STATE_DIR", self.state_dir())
            .env("TDSQL_TERRAFORM", terraform)
            .env("TF_CLI_CONFIG_FILE", cli_config)
            .env("AWS_ENDPOINT_URL", tdsql_test_support::aws_endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let started = std::time::Instant::now();
        let run = Run::of(self.xtask(args).output().unwrap(), args);
        // Shown with --no-capture or on failure: where the (terraform-bound) time goes.
        eprintln!("xtask {}: {:.1} s", run.args, started.elapsed().as_secs_f64());
        run
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What one xtask run printed.
struct Run {
    args: String,
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output, args: &[&str]) -> Self {
        Self {
            args: args.join(" "),
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn success(self) -> Self {
        assert!(
            self.ok,
            "`xtask {}` failed\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    fn failure(self) -> Self {
        assert!(
            !self.ok,
            "`xtask {}` succeeded but should not\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// The xtask's own error lines (`error: ...`, `caused by: ...`) and warnings, without Terraform's output.
    fn messages(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:") || l.starts_with("warning:") || l.starts_with("note:"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn expect_message(&self, needles: &[&str]) {
        let messages = self.messages();
        for needle in needles {
            assert!(
                messages.contains(needle),
                "`xtask {}`: `{needle}` missing from its messages:\n{messages}\n--- full stderr\n{}",
                self.args,
                self.stderr
            );
        }
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// What moto says about a cluster: `Some(deletion protection)` when it exists.
fn cluster_on_moto(identifier: &str) -> Option<bool> {
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        match aws_sdk_dsql::Client::new(&sdk).get_cluster().identifier(identifier).send().await {
            Ok(out) => Some(out.deletion_protection_enabled()),
            Err(err)
                if err.as_service_error().is_some_and(GetClusterError::is_resource_not_found_exception) =>
            {
                None
            }
            Err(err) => panic!("GetCluster {identifier} on moto: {err:?}"),
        }
    })
}

/// What moto says about a table: `Some((hash key, billing mode, ttl attribute))` when it exists.
fn table_on_moto(name: &str) -> Option<(String, String, String)> {
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let table = match client.describe_table().table_name(name).send().await {
            Ok(out) => out.table.expect("a table description"),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(DescribeTableError::is_resource_not_found_exception) =>
            {
                return None;
            }
            Err(err) => panic!("DescribeTable {name} on moto: {err:?}"),
        };
        let key = table.key_schema()[0].attribute_name().to_owned();
        let billing =
            table.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str().to_owned());
        let ttl = client.describe_time_to_live().table_name(name).send().await.unwrap();
        let ttl =
            ttl.time_to_live_description().and_then(|t| t.attribute_name()).unwrap_or_default().to_owned();
        Some((key, billing.unwrap_or_default(), ttl))
    })
}

fn state_json(sandbox: &Sandbox) -> serde_json::Value {
    let text = std::fs::read_to_string(sandbox.state_dir().join("terraform.tfstate")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn output_of(sandbox: &Sandbox, name: &str) -> String {
    state_json(sandbox)["outputs"][name]["value"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn terraform_module_is_formatted_and_valid() {
    let (terraform, cli_config) = tdsql_test_support::terraform();
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/shared");
    let fmt = Command::new(&terraform)
        .args(["fmt", "-check", "-diff", "-recursive", "-no-color"])
        .arg(&module)
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .output()
        .unwrap();
    assert!(
        fmt.status.success(),
        "terraform/shared is not `terraform fmt` clean; run `terraform fmt terraform/shared`:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );

    // validate needs an initialised directory; a copy keeps .terraform/ out of the tree. The
    // committed lock file comes along, read-only: the provider of the local mirror must match it.
    let sandbox = Sandbox::new("validate");
    for entry in std::fs::read_dir(&module).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") || path.ends_with(".terraform.lock.hcl") {
            std::fs::copy(&path, sandbox.state_dir().join(path.file_name().unwrap())).unwrap();
        }
    }
    assert!(
        sandbox.state_dir().join(".terraform.lock.hcl").is_file(),
        "terraform/shared/.terraform.lock.hcl is committed"
    );
    for args in [
        &["init", "-backend=false", "-input=false", "-lockfile=readonly", "-no-color"][..],
        &["validate", "-no-color"],
    ] {
        let out = Command::new(&terraform)
            .arg(format!("-chdir={}", sandbox.state_dir().display()))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "terraform {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The names of the tables terraform/shared derives for the sandbox's project.
fn table_names(sandbox: &Sandbox) -> (String, String) {
    (format!("{}-dsql-rate-limiter", sandbox.project), format!("{}-dsql-conn-lease", sandbox.project))
}

/// Renders the local profile with `config_toml` as the user's file (as `config render` would,
/// without writing into the checkout): every file the containers read points at the dsql-local gateway.
fn assert_local_profile_renders_the_gateway(config_toml: &str) {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/local/profile.toml");
    let loaded = tdsql_config_renderer::Loader::new()
        .file(&profile, "profiles/local/profile.toml")
        .unwrap()
        .text(config_toml, "config.toml")
        .unwrap()
        .load()
        .unwrap();
    let files = tdsql_config_renderer::render::render_all(&loaded.config, "local").unwrap();
    let contents = |path: &str| files.iter().find(|f| f.path == path).unwrap().contents.as_str();
    let temporal_env = contents(tdsql_config_renderer::render::TEMPORAL_ENV);
    for line in ["CLUSTER_ENDPOINT=dsql-local", "SQL_HOST=dsql-local"] {
        assert!(temporal_env.lines().any(|l| l == line), "local temporal.env lacks {line}:\n{temporal_env}");
    }
    let server = contents(tdsql_config_renderer::render::TEMPORAL_CONFIG);
    assert!(server.contains("connectAddr: \"dsql-local:5432\""), "local config.yaml:\n{server}");
    for f in files.iter().filter(|f| !f.path.starts_with(tdsql_config_renderer::render::GRAFANA_DASHBOARDS)) {
        assert!(!f.contents.contains(".on.aws"), "local {} points at the cluster:\n{}", f.path, f.contents);
    }
}

/// apply (cluster + tables) → config write-back with comments kept → status → output → a second
/// apply changes nothing. (Destroy has a test of its own, so that neither runs long.)
#[test]
fn apply_writes_back_status_reports_and_a_second_apply_changes_nothing() {
    let sandbox = Sandbox::new("apply");
    sandbox.write_config(true, REGION);
    sandbox.write_tfvars("deletion_protection = false\ntags = { Owner = \"infra-test\" }\n");

    let applied = sandbox.run(&["infra", "apply", "--yes"]).success();
    let identifier = output_of(&sandbox, "dsql_cluster_identifier");
    assert_eq!(identifier.len(), 26, "a DSQL identifier is 26 characters: {identifier:?}");
    let endpoint = format!("{identifier}.dsql.{REGION}.on.aws");
    assert!(applied.stdout.contains(&endpoint), "apply prints the endpoint:\n{}", applied.stdout);
    assert_eq!(cluster_on_moto(&identifier), Some(false), "the cluster exists, deletion protection off");
    let (rate_limiter, conn_lease) = table_names(&sandbox);
    for table in [&rate_limiter, &conn_lease] {
        assert_eq!(
            table_on_moto(table),
            Some(("pk".to_owned(), "PAY_PER_REQUEST".to_owned(), "ttl_epoch".to_owned())),
            "table {table}: hash key pk, on-demand, TTL on ttl_epoch"
        );
    }

    assert_eq!(output_of(&sandbox, "dsql_endpoint"), endpoint, "terraform's endpoint output");
    let config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    for expected in [
        format!("identifier = \"{identifier}\""),
        format!("endpoint = \"{endpoint}\""),
        format!("table = \"{rate_limiter}\""),
        format!("table = \"{conn_lease}\""),
        "# Project settings (kept by the test: comments must survive the write-back).".to_owned(),
        "name = \"".to_owned() + &sandbox.project + "\"  # resource prefix",
        "# Only needed when several Temporal instances share the cluster.".to_owned(),
    ] {
        assert!(config.contains(&expected), "config.toml lacks `{expected}` after apply:\n{config}");
    }
    // config.toml overlays every profile: the dsql profile uses the endpoint written there, the
    // local profile keeps its gateway (`dsql-local`), in what it renders too.
    let dsql = sandbox.run(&["--profile", "dsql", "config", "validate"]).success();
    assert!(dsql.stdout.contains(&format!("(endpoint {endpoint})")), "{}", dsql.stdout);
    let local = sandbox.run(&["--profile", "local", "config", "validate"]).success();
    assert!(local.stdout.contains("(endpoint dsql-local)"), "{}", local.stdout);
    assert_local_profile_renders_the_gateway(&config);

    let status = sandbox.run(&["infra", "status"]).success();
    assert!(status.stdout.contains(&format!("cluster     {identifier}  ACTIVE")), "{}", status.stdout);
    assert!(status.stdout.contains(&endpoint), "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!("table       {rate_limiter} (rate_limiter)  ACTIVE")),
        "{}",
        status.stdout
    );

    let output = sandbox.run(&["infra", "output", "dsql_endpoint"]).success();
    assert_eq!(output.stdout.trim(), endpoint);

    let again = sandbox.run(&["infra", "apply", "--yes"]).success();
    assert!(again.stderr.contains("no changes"), "the second apply changes nothing:\n{}", again.stderr);
    assert!(!again.stderr.contains(" apply -input=false"), "no terraform apply ran:\n{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(sandbox.config_file()).unwrap(),
        config,
        "config.toml is left as it was"
    );
    assert_eq!(output_of(&sandbox, "dsql_cluster_identifier"), identifier, "the same cluster");
}

/// With deletion protection off in the test variables, destroy removes the cluster and both
/// tables, leaves the committed module alone and clears the keys apply wrote.
#[test]
fn destroy_removes_everything_and_clears_the_config() {
    let sandbox = Sandbox::new("destroy");
    sandbox.write_config(true, REGION);
    sandbox.write_tfvars("deletion_protection = false\n");
    sandbox.run(&["infra", "apply", "--yes"]).success();
    let identifier = output_of(&sandbox, "dsql_cluster_identifier");
    let (rate_limiter, conn_lease) = table_names(&sandbox);
    assert!(cluster_on_moto(&identifier).is_some() && table_on_moto(&rate_limiter).is_some());

    let destroyed = sandbox.run(&["infra", "destroy", "--confirm", &sandbox.project]).success();
    assert!(destroyed.stderr.contains(&format!("destroyed cluster {identifier}")), "{}", destroyed.stderr);
    assert_eq!(cluster_on_moto(&identifier), None, "the cluster is gone");
    assert_eq!(table_on_moto(&rate_limiter), None, "the rate-limiter table is gone");
    assert_eq!(table_on_moto(&conn_lease), None, "the lease table is gone");
    assert!(!sandbox.state_dir().join(".destroy").exists(), "the throwaway copy is removed");
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/shared/main.tf");
    assert!(
        std::fs::read_to_string(module).unwrap().contains("prevent_destroy = true"),
        "main.tf is untouched"
    );
    let config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    assert!(!config.contains(&identifier), "destroy clears dsql.identifier:\n{config}");
    assert!(config.contains("endpoint = \"\""), "and empties dsql.endpoint:\n{config}");
    assert!(!config.contains(&rate_limiter), "and the table names:\n{config}");
    assert!(config.contains("# resource prefix"), "and keeps the comments:\n{config}");
}

/// A cluster deleted behind Terraform's back: status says so and what to run; plan warns that
/// apply will create a new, empty one. Then switching the tables off would destroy them:
/// prevent_destroy stops the apply, and the xtask says why and what to run.
#[test]
fn a_cluster_deleted_outside_terraform_and_prevent_destroy_are_explained() {
    let sandbox = Sandbox::new("deleted");
    sandbox.write_config(true, REGION);
    sandbox.write_tfvars("deletion_protection = false\n");
    sandbox.run(&["infra", "apply", "--yes"]).success();
    let identifier = output_of(&sandbox, "dsql_cluster_identifier");

    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        aws_sdk_dsql::Client::new(&sdk).delete_cluster().identifier(&identifier).send().await.unwrap();
    });

    let status = sandbox.run(&["infra", "status"]).failure();
    assert!(status.stdout.contains(&format!("cluster     {identifier}  NOT FOUND")), "{}", status.stdout);
    status.expect_message(&[&identifier, "deleted outside terraform", "cargo xtask infra apply"]);

    let plan = sandbox.run(&["infra", "plan"]).success();
    plan.expect_message(&[
        &identifier,
        "deleted outside terraform",
        "new, empty cluster",
        "cargo xtask schema setup",
    ]);
    assert!(plan.stderr.contains("+ create aws_dsql_cluster.this"), "{}", plan.stderr);

    let (rate_limiter, _) = table_names(&sandbox);
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config = config.replace("enabled = true", "enabled = false");
    std::fs::write(sandbox.config_file(), config).unwrap();
    let refused = sandbox.run(&["infra", "apply", "--yes"]).failure();
    refused.expect_message(&[
        "prevent_destroy",
        "aws_dynamodb_table.rate_limiter[0]",
        "cargo xtask infra destroy",
    ]);
    assert!(table_on_moto(&rate_limiter).is_some(), "the refused apply left the table alone");
    assert_eq!(cluster_on_moto(&identifier), None, "and created nothing");
}

/// Creates the on-demand table `name` with the string hash key `key` on moto, behind terraform's back.
fn create_table_on_moto(name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        aws_sdk_dynamodb::Client::new(&sdk)
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTable {name} on moto: {e:?}"));
    });
}

/// What moto says about an OpenSearch domain, when it exists.
fn domain_on_moto(name: &str) -> Option<aws_sdk_opensearch::types::DomainStatus> {
    use aws_sdk_opensearch::operation::describe_domain::DescribeDomainError;
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        match aws_sdk_opensearch::Client::new(&sdk).describe_domain().domain_name(name).send().await {
            Ok(out) => out.domain_status,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(DescribeDomainError::is_resource_not_found_exception) =>
            {
                None
            }
            Err(err) => panic!("DescribeDomain {name} on moto: {err:?}"),
        }
    })
}

/// `opensearch.create = true`: apply creates the domain (one t3.small.search node, 10 GiB gp3,
/// encrypted, HTTPS only with TLS 1.2, the caller allowed) and writes `https://<endpoint>` into
/// config.toml with its comments kept, which the dsql profile then renders with; a second apply
/// changes nothing; destroy deletes the domain and empties opensearch.endpoint.
#[test]
fn an_opensearch_domain_is_created_written_back_and_destroyed() {
    use aws_sdk_opensearch::types as os;
    let sandbox = Sandbox::new("osdomain");
    sandbox.write_config(false, REGION);
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str(
        "\n[visibility]\nbackend = \"opensearch\"  # the team's shared visibility\n\n\
         [opensearch]\n# Created by infra apply, which fills in the endpoint.\ncreate = true\n",
    );
    std::fs::write(sandbox.config_file(), config).unwrap();
    sandbox.write_tfvars("deletion_protection = false\n");

    let started = std::time::Instant::now();
    let applied = sandbox.run(&["infra", "apply", "--yes"]).success();
    let apply_secs = started.elapsed().as_secs_f64();
    let domain = output_of(&sandbox, "opensearch_domain_name");
    assert_eq!(domain, format!("{}-visibility", sandbox.project), "the domain is named after the project");
    let host = output_of(&sandbox, "opensearch_endpoint");
    assert!(!host.is_empty(), "terraform's opensearch_endpoint output is set");
    assert!(
        applied.stdout.contains(&format!("https://{host}")),
        "apply prints the endpoint:\n{}",
        applied.stdout
    );
    // The provider first looks at a new domain after 10 minutes unless its timeout (5 s on a local
    // API) ends sooner; with the 10 minutes the whole apply would take over 600 s.
    assert!(
        apply_secs < 300.0,
        "apply took {apply_secs:.0} s: the provider waited for its 10-minute first look"
    );

    let status = domain_on_moto(&domain).expect("the domain exists on moto");
    assert_eq!(status.endpoint(), Some(host.as_str()));
    assert_eq!(status.processing(), Some(false));
    let cluster = status.cluster_config().unwrap();
    assert_eq!(
        cluster.instance_type().map(os::OpenSearchPartitionInstanceType::as_str),
        Some("t3.small.search")
    );
    assert_eq!(cluster.instance_count(), Some(1));
    let ebs = status.ebs_options().unwrap();
    assert_eq!((ebs.ebs_enabled(), ebs.volume_size()), (Some(true), Some(10)));
    assert_eq!(ebs.volume_type().map(os::VolumeType::as_str), Some("gp3"));
    assert_eq!(
        status.encryption_at_rest_options().and_then(os::EncryptionAtRestOptions::enabled),
        Some(true)
    );
    assert_eq!(
        status.node_to_node_encryption_options().and_then(os::NodeToNodeEncryptionOptions::enabled),
        Some(true)
    );
    let https = status.domain_endpoint_options().unwrap();
    assert_eq!(https.enforce_https(), Some(true));
    assert_eq!(
        https.tls_security_policy().map(os::TlsSecurityPolicy::as_str),
        Some("Policy-Min-TLS-1-2-2019-07")
    );
    let policy: serde_json::Value = serde_json::from_str(status.access_policies().unwrap()).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Effect"], "Allow", "{policy}");
    assert_eq!(statement["Action"], "es:ESHttp*", "{policy}");
    // moto's caller (STS GetCallerIdentity) is arn:aws:sts::123456789012:user/moto.
    assert!(statement["Principal"]["AWS"].to_string().contains("123456789012"), "the caller: {policy}");
    assert_eq!(
        statement["Resource"],
        format!("arn:aws:es:{REGION}:123456789012:domain/{domain}/*"),
        "{policy}"
    );

    let config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    for expected in [
        format!("endpoint = \"https://{host}\""),
        "# Created by infra apply, which fills in the endpoint.".to_owned(),
        "backend = \"opensearch\"  # the team's shared visibility".to_owned(),
        "# resource prefix".to_owned(),
    ] {
        assert!(config.contains(&expected), "config.toml lacks `{expected}` after apply:\n{config}");
    }
    let dsql = sandbox.run(&["--profile", "dsql", "config", "validate"]).success();
    assert!(!dsql.stderr.contains("opensearch.endpoint"), "the endpoint is accepted:\n{}", dsql.stderr);
    let status = sandbox.run(&["infra", "status"]).success();
    assert!(
        status.stdout.contains(&format!("opensearch  {domain}  OpenSearch_2.19  ready (processing false)")),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(&format!("            https://{host}")), "{}", status.stdout);
    // The index is asked of the domain itself, which moto does not serve (status still succeeds).
    assert!(
        status.stdout.contains(&format!(
            "index       temporal_visibility_v1_dev  UNREACHABLE (cannot connect to {host}:443"
        )),
        "{}",
        status.stdout
    );

    let again = sandbox.run(&["infra", "apply", "--yes"]).success();
    assert!(again.stderr.contains("no changes"), "the second apply changes nothing:\n{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(sandbox.config_file()).unwrap(),
        config,
        "config.toml is left as it was"
    );

    let destroyed = sandbox.run(&["infra", "destroy", "--confirm", &sandbox.project]).success();
    assert!(destroyed.stderr.contains(&format!("OpenSearch domain {domain}")), "{}", destroyed.stderr);
    assert!(domain_on_moto(&domain).is_none(), "the domain is gone");
    let config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    assert!(!config.contains(&host), "destroy empties opensearch.endpoint:\n{config}");
    assert!(config.contains("# Created by infra apply"), "and keeps the comments:\n{config}");
}

/// A domain made elsewhere: status finds it by opensearch.endpoint (no terraform involved) and says
/// so when the endpoint names no domain. It also asks the domain for the visibility index (a signed
/// HEAD): moto serves no OpenSearch data plane and its endpoint's name does not resolve here, so the
/// index is unreachable, with the reason, and status still shows everything and succeeds.
#[test]
fn status_finds_a_domain_made_elsewhere_by_its_endpoint() {
    let sandbox = Sandbox::new("osstatus");
    let domain = format!("{}-os", sandbox.project);
    let (identifier, host) = block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let cluster =
            aws_sdk_dsql::Client::new(&sdk).create_cluster().deletion_protection_enabled(false).send();
        let identifier = cluster.await.unwrap().identifier().to_owned();
        let created = aws_sdk_opensearch::Client::new(&sdk).create_domain().domain_name(&domain).send().await;
        let host = created.unwrap().domain_status().unwrap().endpoint().unwrap().to_owned();
        (identifier, host)
    });
    let write = |endpoint: &str| {
        sandbox.write_config(false, REGION);
        let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
        config.push_str(&format!(
            "\n[dsql]\nidentifier = \"{identifier}\"\n[visibility]\nbackend = \"opensearch\"\n[opensearch]\nendpoint = \"{endpoint}\"\n"
        ));
        std::fs::write(sandbox.config_file(), config).unwrap();
    };
    write(&format!("https://{host}"));
    let started = std::time::Instant::now();
    let status = sandbox.run(&["infra", "status"]).success();
    assert!(status.stdout.contains(&format!("opensearch  {domain}  ")), "{}", status.stdout);
    assert!(status.stdout.contains("ready (processing false)"), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("cluster     {identifier}  ")), "{}", status.stdout);
    let unreachable =
        format!("index       temporal_visibility_v1_dev  UNREACHABLE (cannot connect to {host}:443: ");
    assert!(status.stdout.contains(&unreachable), "{}", status.stdout);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "bounded: {:?}", started.elapsed());

    write("https://search-nothing-here.us-east-1.es.amazonaws.com");
    let missing = sandbox.run(&["infra", "status"]).failure();
    missing.expect_message(&[
        "OpenSearch domain `search-nothing-here.us-east-1.es.amazonaws.com` does not exist",
    ]);

    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        aws_sdk_opensearch::Client::new(&sdk).delete_domain().domain_name(&domain).send().await.unwrap();
        aws_sdk_dsql::Client::new(&sdk).delete_cluster().identifier(&identifier).send().await.unwrap();
    });
}

/// opensearch.create with an endpoint the state does not manage would create a second domain.
#[test]
fn a_configured_domain_the_state_does_not_manage_is_not_duplicated() {
    let sandbox = Sandbox::new("osadopt");
    sandbox.write_config(false, REGION);
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str(
        "\n[opensearch]\ncreate = true\nendpoint = \"https://search-team-abc.us-east-1.es.amazonaws.com\"\n",
    );
    std::fs::write(sandbox.config_file(), config).unwrap();
    let run = sandbox.run(&["infra", "apply", "--yes"]).failure();
    run.expect_message(&[
        "opensearch.endpoint in",
        "`https://search-team-abc.us-east-1.es.amazonaws.com`",
        "opensearch.create = false",
    ]);
    assert!(!run.stderr.contains("▸ "), "no terraform ran:\n{}", run.stderr);
}

#[test]
fn missing_credentials_are_explained() {
    let sandbox = Sandbox::new("nocreds");
    sandbox.write_config(false, REGION);
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str("\n[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n");
    std::fs::write(sandbox.config_file(), config).unwrap();
    let nowhere = sandbox.dir.join("no-such-file");
    let without_credentials = |args: &[&str]| {
        let output = sandbox
            .xtask(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_CONFIG_FILE", &nowhere)
            .output()
            .unwrap();
        Run::of(output, args).failure()
    };
    // status asks AWS (through tdsql-ops) about the configured cluster.
    let status = without_credentials(&["infra", "status"]);
    status.expect_message(&["no usable AWS credentials", "AWS_PROFILE", "cargo xtask doctor"]);

    std::fs::write(
        sandbox.config_file(),
        std::fs::read_to_string(sandbox.config_file())
            .unwrap()
            .replace("identifier = \"abcdefghijklmnopqrstuvwxyz\"", "identifier = \"\""),
    )
    .unwrap();
    // plan runs Terraform's provider (with no cluster configured: the empty state manages none).
    let plan = without_credentials(&["infra", "plan"]);
    plan.expect_message(&["no usable AWS credentials", "AWS_PROFILE", "cargo xtask doctor"]);
}

/// A plain HTTP request to moto's S3 API (moto needs no signature), for what the xtask tests have
/// no S3 client for: creating the state bucket and listing it.
fn s3_request(method: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let endpoint = tdsql_test_support::aws_endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

/// A team's shared state: a local state (one apply) moves into S3 on moto with `infra state
/// migrate` (a DynamoDB lock table), after which a plan changes nothing, status names the backend,
/// a stale local copy can neither be planned against nor migrated over the shared state, and an
/// apply goes through the S3 backend.
#[test]
fn a_local_state_migrates_into_s3_and_plans_without_changes() {
    let sandbox = Sandbox::new("s3state");
    sandbox.write_config(false, REGION);
    sandbox.write_tfvars("deletion_protection = false\n");
    let refused = sandbox.run(&["infra", "state", "migrate"]).failure();
    refused.expect_message(&["infra.state.backend is local", "infra.state.bucket <bucket>"]);
    sandbox.run(&["infra", "apply", "--yes"]).success();
    let identifier = output_of(&sandbox, "dsql_cluster_identifier");

    let bucket = format!("{}-state", sandbox.project);
    let lock_table = format!("{}-locks", sandbox.project);
    let (status, response) = s3_request("PUT", &format!("/{bucket}"));
    assert_eq!(status, 200, "creating bucket {bucket} on moto:\n{response}");
    create_table_on_moto(&lock_table, "LockID");
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str(&format!(
        "\n[infra.state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nlock_table = \"{lock_table}\"\n"
    ));
    std::fs::write(sandbox.config_file(), config).unwrap();
    let key = format!("{}/terraform/shared.tfstate", sandbox.project);

    let refused = sandbox.run(&["infra", "plan"]).failure();
    refused.expect_message(&["still manages resources", "cargo xtask infra state migrate"]);

    let migrated = sandbox.run(&["infra", "state", "migrate"]).success();
    assert!(
        migrated.stderr.contains(&format!(
            "moved the terraform state of project `{}` (cluster {identifier}) from {}",
            sandbox.project,
            sandbox.state_dir().join("terraform.tfstate").display()
        )),
        "{}",
        migrated.stderr
    );
    assert!(migrated.stderr.contains(&format!("into s3://{bucket}/{key}")), "{}", migrated.stderr);
    let kept = sandbox.state_dir().join("terraform.tfstate.migrated");
    assert!(
        kept.is_file() && !sandbox.state_dir().join("terraform.tfstate").exists(),
        "the local file is moved aside"
    );
    // moto refuses an unsigned GET of an encrypted object; the listing shows it is there.
    let (status, listing) = s3_request("GET", &format!("/{bucket}"));
    assert_eq!(status, 200, "listing {bucket}:\n{listing}");
    assert!(listing.contains(&format!("<Key>{key}</Key>")), "the state object exists:\n{listing}");

    let plan = sandbox.run(&["infra", "plan"]).success();
    assert!(
        plan.stderr.contains("no changes"),
        "a plan after the migration changes nothing:\n{}",
        plan.stderr
    );
    assert!(
        !format!("{}{}", plan.stdout, plan.stderr).contains("Error releasing the state lock"),
        "the plan released its lock:\n{}\n{}",
        plan.stdout,
        plan.stderr
    );
    let status = sandbox.run(&["infra", "status"]).success();
    assert!(
        status.stdout.contains(&format!(
            "state       s3://{bucket}/{key} ({REGION}, lock: DynamoDB table {lock_table})"
        )),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(&format!("cluster     {identifier}  ACTIVE")), "{}", status.stdout);

    // A stale local copy is neither planned against nor pushed over the shared state.
    std::fs::copy(&kept, sandbox.state_dir().join("terraform.tfstate")).unwrap();
    let again = sandbox.run(&["infra", "state", "migrate"]).failure();
    again.expect_message(&["nothing was migrated; the local state is still"]);
    let taken = format!("s3://{bucket}/{key} already holds a terraform state (project `{}`", sandbox.project);
    assert!(again.stderr.contains(&taken), "{}", again.stderr);
    assert!(
        sandbox.state_dir().join("terraform.tfstate").is_file(),
        "the refused migration put the file back"
    );
    sandbox.run(&["infra", "plan"]).failure().expect_message(&["cargo xtask infra state migrate"]);
    std::fs::remove_file(sandbox.state_dir().join("terraform.tfstate")).unwrap();

    // An apply through the S3 backend (and its lock table): the coordination tables switched on.
    let config =
        std::fs::read_to_string(sandbox.config_file()).unwrap().replace("enabled = false", "enabled = true");
    std::fs::write(sandbox.config_file(), config).unwrap();
    sandbox.run(&["infra", "apply", "--yes"]).success();
    let (rate_limiter, conn_lease) = table_names(&sandbox);
    assert!(table_on_moto(&rate_limiter).is_some(), "the apply created the tables");
    let output = sandbox.run(&["infra", "output", "rate_limiter_table"]).success();
    assert_eq!(output.stdout.trim(), rate_limiter, "the shared state tracks them");
    assert!(!sandbox.state_dir().join("terraform.tfstate").exists(), "and no local state was written");

    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        aws_sdk_dsql::Client::new(&sdk).delete_cluster().identifier(&identifier).send().await.unwrap();
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        for table in [&rate_limiter, &conn_lease, &lock_table] {
            dynamodb.delete_table().table_name(table).send().await.unwrap();
        }
    });
}

/// What moto says about a state bucket: (versioning, default encryption, all four public access
/// blocks on), independently of the xtask. Versioning is read over plain HTTP: the SDK cannot
/// decode moto's answer (its root element is not S3's).
fn bucket_settings(bucket: &str) -> (String, String, bool) {
    let (status, versioning) = s3_request("GET", &format!("/{bucket}?versioning"));
    assert_eq!(status, 200, "{versioning}");
    let versioning = versioning
        .split_once("<Status>")
        .and_then(|(_, rest)| rest.split_once("</Status>"))
        .map(|(status, _)| status.to_owned())
        .unwrap_or_default();
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build();
        let s3 = aws_sdk_s3::Client::from_conf(config);
        let encryption = s3.get_bucket_encryption().bucket(bucket).send().await.unwrap();
        let algorithm = encryption
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_owned());
        let block = s3.get_public_access_block().bucket(bucket).send().await.unwrap();
        let blocked = block.public_access_block_configuration().is_some_and(|c| {
            [
                c.block_public_acls(),
                c.ignore_public_acls(),
                c.block_public_policy(),
                c.restrict_public_buckets(),
            ]
            .iter()
            .all(|b| *b == Some(true))
        });
        (versioning, algorithm.unwrap_or_default(), blocked)
    })
}

/// `infra bootstrap-state` on moto: a dry run creates nothing; the first run creates the bucket
/// (versioned, AES256 by default, public access blocked) and the lock table (hash key LockID) and
/// prints the keys; a second run finds both and checks them; a lock table with another key and a
/// local backend are refused with the key to change.
#[test]
fn bootstrap_state_creates_the_bucket_and_lock_table_once() {
    let sandbox = Sandbox::new("bootstrap");
    sandbox.write_config(false, REGION);
    let refused = sandbox.run(&["infra", "bootstrap-state"]).failure();
    refused.expect_message(&["infra.state.backend is local", "infra.state.bucket <bucket>"]);

    let bucket = format!("{}-state", sandbox.project);
    let lock_table = format!("{}-locks", sandbox.project);
    let base = std::fs::read_to_string(sandbox.config_file()).unwrap();
    std::fs::write(
        sandbox.config_file(),
        format!(
            "{base}\n[infra.state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nlock_table = \"{lock_table}\"\n"
        ),
    )
    .unwrap();

    let dry = sandbox.run(&["--dry-run", "infra", "bootstrap-state"]).success();
    assert!(
        dry.stdout.contains(&format!(
            "bootstrap-state --region {REGION} --bucket {bucket} --lock-table {lock_table}"
        )),
        "{}",
        dry.stdout
    );
    assert_eq!(s3_request("HEAD", &format!("/{bucket}")).0, 404, "a dry run creates no bucket");

    let first = sandbox.run(&["infra", "bootstrap-state"]).success();
    for line in [
        format!("bucket      {bucket}: created in {REGION}"),
        "versioning  Enabled (turned on)".to_owned(),
        "encryption  AES256 by default (turned on)".to_owned(),
        "public      all public access blocked (turned on)".to_owned(),
        format!("lock table  {lock_table}: created, hash key LockID (S), on-demand"),
        format!("bucket = \"{bucket}\""),
        format!("key = \"{}/terraform/shared.tfstate\"", sandbox.project),
        format!("infra.state.lock_table = \"{lock_table}\""),
        "cargo xtask infra state migrate".to_owned(),
    ] {
        assert!(first.stdout.contains(&line), "`{line}` missing:\n{}", first.stdout);
    }
    assert_eq!(bucket_settings(&bucket), ("Enabled".to_owned(), "AES256".to_owned(), true));
    let key = block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let table = aws_sdk_dynamodb::Client::new(&sdk).describe_table().table_name(&lock_table).send().await;
        table.unwrap().table.unwrap().key_schema()[0].attribute_name().to_owned()
    });
    assert_eq!(key, "LockID", "terraform's lock key");

    let second = sandbox.run(&["infra", "bootstrap-state"]).success();
    for line in [
        format!("bucket      {bucket}: exists, checking its settings"),
        "versioning  Enabled (was already)".to_owned(),
        "encryption  AES256 by default (was already)".to_owned(),
        "public      all public access blocked (was already)".to_owned(),
        format!("lock table  {lock_table}: exists, hash key LockID (S)"),
    ] {
        assert!(second.stdout.contains(&line), "`{line}` missing:\n{}", second.stdout);
    }
    assert!(!second.stdout.contains("turned on"), "nothing changed:\n{}", second.stdout);

    // A table of the coordination kind (hash key pk) is no lock table.
    let (rate_limiter, _) = table_names(&sandbox);
    create_table_on_moto(&rate_limiter, "pk");
    let config = std::fs::read_to_string(sandbox.config_file()).unwrap().replace(&lock_table, &rate_limiter);
    std::fs::write(sandbox.config_file(), config).unwrap();
    let wrong = sandbox.run(&["infra", "bootstrap-state"]).failure();
    wrong.expect_message(&[
        &format!("table `{rate_limiter}` exists but its key is not"),
        "infra.state.lock_table",
    ]);

    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        for table in [&lock_table, &rate_limiter] {
            dynamodb.delete_table().table_name(table).send().await.unwrap();
        }
    });
}

/// A clone that starts on the S3 backend (S3's own lock file): the dry run shows the backend
/// settings; a local state without resources (as a destroy leaves it) is moved aside instead of
/// making the first init ask whether to migrate it; the plan runs against the S3 state.
#[test]
fn a_new_clone_plans_against_the_s3_state() {
    let sandbox = Sandbox::new("s3fresh");
    sandbox.write_config(false, REGION);
    let bucket = format!("{}-state", sandbox.project);
    let (status, response) = s3_request("PUT", &format!("/{bucket}"));
    assert_eq!(status, 200, "creating bucket {bucket} on moto:\n{response}");
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str(&format!(
        "\n[infra.state]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nkey = \"team/shared.tfstate\"\n"
    ));
    std::fs::write(sandbox.config_file(), config).unwrap();
    let emptied = r#"{"version": 4, "terraform_version": "1.11.4", "serial": 9, "lineage": "x", "outputs": {}, "resources": []}"#;
    std::fs::write(sandbox.state_dir().join("terraform.tfstate"), emptied).unwrap();

    let dry = sandbox.run(&["--dry-run", "infra", "plan"]).success();
    let init = dry.stdout.lines().find(|l| l.contains(" init ")).unwrap_or_default().to_owned();
    for config in [
        format!("-backend-config=bucket={bucket}"),
        "-backend-config=key=team/shared.tfstate".to_owned(),
        format!("-backend-config=region={REGION}"),
        "-backend-config=use_lockfile=true".to_owned(),
        "-backend-config=encrypt=true".to_owned(),
    ] {
        assert!(init.contains(&config), "the init of the dry run lacks {config}:\n{}", dry.stdout);
    }
    assert!(!sandbox.state_dir().join("backend_override.tf").exists(), "a dry run writes nothing");

    let plan = sandbox.run(&["infra", "plan"]).success();
    plan.expect_message(&["tfstate.unused", &format!("s3://{bucket}/team/shared.tfstate")]);
    assert!(plan.stderr.contains("+ create aws_dsql_cluster.this"), "{}", plan.stderr);
    let record = std::fs::read_to_string(sandbox.state_dir().join(".terraform/terraform.tfstate")).unwrap();
    assert!(record.contains("\"type\": \"s3\""), "the working directory uses the S3 backend:\n{record}");
    assert!(!sandbox.state_dir().join("terraform.tfstate").exists(), "no local state");
}

/// `init` without a provider (a mirror that is not there; a registry behind a proxy that refuses
/// connections, so that no network is needed to reach it) names the cause and both fixes.
#[test]
fn a_provider_that_cannot_be_had_is_explained() {
    let sandbox = Sandbox::new("noprovider");
    sandbox.write_config(false, REGION);
    let missing = sandbox.dir.join("no-such-mirror");
    let cli_config = sandbox.dir.join("terraform.rc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include =              [\"registry.terraform.io/hashicorp/aws\"]\n  }}\n  direct {{\n    exclude =              [\"registry.terraform.io/hashicorp/aws\"]\n  }}\n}}\n",
            missing.display()
        ),
    )
    .unwrap();
    let output = sandbox.xtask(&["infra", "plan"]).env("TF_CLI_CONFIG_FILE", &cli_config).output().unwrap();
    let run = Run::of(output, &["infra", "plan"]).failure();
    run.expect_message(&[
        "terraform init failed",
        "could not get the hashicorp/aws provider",
        &format!("the provider mirror that TF_CLI_CONFIG_FILE ({})", cli_config.display()),
        "registry.terraform.io",
        "filesystem_mirror",
    ]);
    assert!(
        !sandbox.state_dir().join(".terraform/tdsql-init-stamp").exists(),
        "a failed init is not recorded"
    );

    std::fs::write(&cli_config, "# no provider_installation: straight to the registry\n").unwrap();
    let output = sandbox
        .xtask(&["infra", "plan"])
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let run = Run::of(output, &["infra", "plan"]).failure();
    run.expect_message(&[
        "the Terraform registry (registry.terraform.io) was unreachable",
        "HTTPS_PROXY",
        "TF_CLI_CONFIG_FILE",
    ]);
}

#[test]
fn a_region_without_dsql_is_refused_before_terraform_runs() {
    let sandbox = Sandbox::new("region");
    sandbox.write_config(false, "eu-west-1");
    let run = sandbox.run(&["infra", "plan"]).failure();
    run.expect_message(&["`eu-west-1`", "us-east-1, us-east-2", "project.region"]);
    assert!(!run.stderr.contains("▸ "), "no terraform ran:\n{}", run.stderr);

    // Against real AWS (no local endpoint), the list of regions with Aurora DSQL applies.
    sandbox.write_config(false, "sa-east-1");
    let run = Run::of(
        sandbox.xtask(&["infra", "plan"]).env_remove("AWS_ENDPOINT_URL").output().unwrap(),
        &["infra", "plan"],
    )
    .failure();
    run.expect_message(&["Aurora DSQL is not offered in project.region `sa-east-1`", "--any-region"]);
    assert!(!run.stderr.contains("▸ "), "no terraform ran:\n{}", run.stderr);
}

/// A state file as terraform/shared leaves it, for checks that run before Terraform does.
fn fake_state(project: &str, deletion_protection: bool) -> String {
    format!(
        r#"{{"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "x",
  "outputs": {{"project_name": {{"value": "{project}", "type": "string"}},
               "region": {{"value": "us-east-1", "type": "string"}}}},
  "resources": [{{"mode": "managed", "type": "aws_dsql_cluster", "name": "this",
                  "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                  "instances": [{{"schema_version": 0, "attributes": {{
                     "identifier": "abcdefghijklmnopqrstuvwxyz", "deletion_protection_enabled": {deletion_protection},
                     "tags": {{"Project": "{project}"}}}}}}]}}]}}"#
    )
}

#[test]
fn a_state_of_another_project_is_refused() {
    let sandbox = Sandbox::new("otherstate");
    sandbox.write_config(false, REGION);
    std::fs::write(sandbox.state_dir().join("terraform.tfstate"), fake_state("someone-else", true)).unwrap();
    for args in
        [&["infra", "plan"][..], &["infra", "apply", "--yes"], &["infra", "destroy", "--confirm", "x"]]
    {
        let run = sandbox.run(args).failure();
        run.expect_message(&["belongs to project `someone-else`", &sandbox.project, "TDSQL_TF_STATE_DIR"]);
        assert!(!run.stderr.contains("▸ "), "no terraform ran:\n{}", run.stderr);
    }
}

#[test]
fn destroy_wants_the_name_typed_back_and_stops_at_deletion_protection() {
    let sandbox = Sandbox::new("guards");
    sandbox.write_config(false, REGION);
    std::fs::write(sandbox.state_dir().join("terraform.tfstate"), fake_state(&sandbox.project, true))
        .unwrap();

    // No terminal and no --confirm: nothing to type the name into.
    let run = sandbox.run(&["infra", "destroy"]).failure();
    run.expect_message(&["stdin is not a terminal", &format!("--confirm {}", sandbox.project)]);
    // --yes is not a way around it.
    let run = sandbox.run(&["infra", "destroy", "--yes"]).failure();
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let run = sandbox.run(&["infra", "destroy", "--confirm", "not-the-project"]).failure();
    run.expect_message(&["`not-the-project` is not the project name", "nothing was destroyed"]);
    // The right name, but deletion protection is on in the state.
    let run = sandbox.run(&["infra", "destroy", "--confirm", &sandbox.project]).failure();
    run.expect_message(&["deletion protection is on", "--disable-deletion-protection", "terraform.tfvars"]);
    assert!(!run.stderr.contains("▸ "), "no terraform ran:\n{}", run.stderr);
}

#[test]
fn a_configured_cluster_the_state_does_not_manage_is_not_duplicated() {
    let sandbox = Sandbox::new("adopt");
    sandbox.write_config(false, REGION);
    let mut config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    config.push_str("\n[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n");
    std::fs::write(sandbox.config_file(), config).unwrap();
    let run = sandbox.run(&["infra", "apply", "--yes"]).failure();
    run.expect_message(&[
        "`abcdefghijklmnopqrstuvwxyz`",
        "does not manage",
        "second cluster",
        "cargo xtask infra import abcdefghijklmnopqrstuvwxyz",
    ]);
}

/// Replaces what differs between machines and runs in a printed plan.
fn normalize(text: &str, sandbox: &Sandbox) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().display().to_string();
    let (terraform, _) = tdsql_test_support::terraform();
    text.replace(&sandbox.dir.display().to_string(), "$SANDBOX")
        .replace(&root, "$ROOT")
        .replace(&tdsql_test_support::aws_endpoint(), "$AWS_ENDPOINT")
        .replace(&terraform.display().to_string(), "terraform")
        .replace(&sandbox.project, "$PROJECT")
}

/// Compares with `xtask/tests/expected/<name>`; `UPDATE_EXPECT=1` rewrites the file instead.
fn expect_file(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_EXPECT=1 to write it", path.display()));
    assert_eq!(
        actual,
        expected,
        "plan differs from {}; run with UPDATE_EXPECT=1 if the change is intended",
        path.display()
    );
}

#[test]
fn dry_run_plans_match_the_expected_files() {
    let sandbox = Sandbox::new("dryrun");
    sandbox.write_config(true, REGION);

    let apply = sandbox.run(&["--dry-run", "infra", "apply", "--yes"]).success();
    expect_file("infra-apply.txt", &normalize(&apply.stdout, &sandbox));

    std::fs::write(sandbox.state_dir().join("terraform.tfstate"), fake_state(&sandbox.project, true))
        .unwrap();
    let destroy = sandbox
        .run(&[
            "--dry-run",
            "infra",
            "destroy",
            "--confirm",
            &sandbox.project,
            "--disable-deletion-protection",
        ])
        .success();
    expect_file("infra-destroy.txt", &normalize(&destroy.stdout, &sandbox));
    assert!(!sandbox.state_dir().join(".destroy").exists(), "a dry run writes nothing");

    // No local terraform: the official image, with the checkout and the state directory mounted.
    let home = sandbox.dir.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let docker = sandbox
        .xtask(&["--dry-run", "infra", "plan"])
        .env_remove("TDSQL_TERRAFORM")
        .env_remove("TF_CLI_CONFIG_FILE")
        .env("PATH", sandbox.dir.join("empty-path"))
        .env("HOME", &home)
        .output()
        .unwrap();
    let docker = Run::of(docker, &["--dry-run", "infra", "plan"]).success();
    docker.expect_message(&["hashicorp/terraform:1.11.4 through Docker"]);
    let owner = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
        format!("{}:{}", meta.uid(), meta.gid())
    };
    expect_file("infra-plan-docker.txt", &normalize(&docker.stdout, &sandbox).replace(&owner, "$UID:$GID"));
}

/// The plans of an apply that creates the OpenSearch domain and of `bootstrap-state`.
#[test]
fn dry_run_plans_of_the_domain_and_the_state_bucket() {
    let sandbox = Sandbox::new("dryrunos");
    sandbox.write_config(false, REGION);
    let base = std::fs::read_to_string(sandbox.config_file()).unwrap();
    std::fs::write(sandbox.config_file(), format!("{base}\n[opensearch]\ncreate = true\n")).unwrap();
    let apply = sandbox.run(&["--dry-run", "infra", "apply", "--yes"]).success();
    expect_file("infra-apply-opensearch.txt", &normalize(&apply.stdout, &sandbox));

    std::fs::write(
        sandbox.config_file(),
        format!(
            "{base}\n[infra.state]\nbackend = \"s3\"\nbucket = \"{}-state\"\nlock_table = \"{}-locks\"\n",
            sandbox.project, sandbox.project
        ),
    )
    .unwrap();
    let bootstrap = sandbox.run(&["--dry-run", "infra", "bootstrap-state"]).success();
    expect_file("infra-bootstrap-state.txt", &normalize(&bootstrap.stdout, &sandbox));
}

/// Adopting a cluster made elsewhere: an unknown identifier fails before Terraform runs;
/// `--config-only` just writes dsql.identifier; `import` puts it into the state, and the plan
/// it runs afterwards shows no changes, because the cluster was made the way terraform/shared
/// makes one (tags, deletion protection as in terraform.tfvars).
#[test]
fn an_existing_cluster_is_imported_into_config_and_state() {
    let sandbox = Sandbox::new("import");
    sandbox.write_config(false, REGION);
    sandbox.write_tfvars("deletion_protection = false\n");

    let unknown = sandbox.run(&["infra", "import", "abcdefghijklmnopqrstuvwxyz"]).failure();
    unknown.expect_message(&[
        "no Aurora DSQL cluster `abcdefghijklmnopqrstuvwxyz` in us-east-1",
        "aws dsql list-clusters",
    ]);
    assert!(!unknown.stderr.contains("▸ "), "no terraform ran:\n{}", unknown.stderr);

    let identifier = block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let created = aws_sdk_dsql::Client::new(&sdk)
            .create_cluster()
            .deletion_protection_enabled(false)
            .tags("Name", format!("{}-dsql", sandbox.project))
            .tags("Project", &sandbox.project)
            .tags("ManagedBy", "terraform")
            .send()
            .await
            .unwrap();
        created.identifier().to_owned()
    });

    sandbox.run(&["infra", "import", &identifier, "--config-only"]).success();
    let config = std::fs::read_to_string(sandbox.config_file()).unwrap();
    assert!(config.contains(&format!("identifier = \"{identifier}\"")), "{config}");
    assert!(config.contains(&format!("endpoint = \"{identifier}.dsql.{REGION}.on.aws\"")), "{config}");
    assert!(config.contains("# resource prefix"), "comments kept:\n{config}");
    assert!(!sandbox.state_dir().join("terraform.tfstate").exists(), "--config-only leaves terraform alone");

    let imported = sandbox.run(&["infra", "import", &identifier]).success();
    assert!(imported.stderr.contains("terraform -chdir="), "terraform ran:\n{}", imported.stderr);
    assert!(
        imported.stderr.contains("no changes: the infrastructure matches the configuration"),
        "the plan after the import shows no changes:\n{}",
        imported.stderr
    );
    assert_eq!(output_of(&sandbox, "dsql_cluster_identifier"), identifier, "the state manages it");
    assert_eq!(std::fs::read_to_string(sandbox.config_file()).unwrap(), config, "config.toml already right");
    let plan = sandbox.run(&["infra", "plan"]).success();
    assert!(plan.stderr.contains("no changes"), "a plan after the import changes nothing:\n{}", plan.stderr);

    // A second cluster cannot be imported into the same state.
    let second = sandbox.run(&["infra", "import", "zyxwvutsrqponmlkjihgfedcba"]).failure();
    second.expect_message(&["already `", "cargo xtask config set dsql.identifier \"\" dsql.endpoint \"\""]);

    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        aws_sdk_dsql::Client::new(&sdk).delete_cluster().identifier(&identifier).send().await.unwrap();
    });
}
