//! Median time of one `TokenVerifier::verify` of an aws-sdk-dsql token, over 10,000 runs.
//! `cargo bench -p tdsql-dsql-local --bench auth`

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config};
use tdsql_dsql_local::auth::{KeyPair, TokenVerifier};

const HOST: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
const RUNS: usize = 10_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let token = runtime.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDBENCH", "bench-secret", None, None, "static"))
            .load()
            .await;
        AuthTokenGenerator::new(Config::builder().hostname(HOST).build().expect("token config"))
            .db_connect_admin_auth_token(&config)
            .await
            .expect("the SDK signs locally")
            .to_string()
    });
    let verifier =
        TokenVerifier::new("us-east-1", vec![HOST.to_owned()], KeyPair::new("AKIDBENCH", "bench-secret"));
    let now = SystemTime::now();
    verifier.verify(&token, "admin", now).expect("the bench token verifies");

    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        black_box(verifier.verify(black_box(&token), "admin", now)).expect("verifies");
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "auth verify ({} chars, {RUNS} runs): median {:?}, p99 {:?}, min {:?}",
        token.len(),
        times[RUNS / 2],
        times[RUNS * 99 / 100],
        times[0]
    );
}
