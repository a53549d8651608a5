//! Proof that the harness's services are real: a PostgreSQL spoken to with tokio-postgres, and a
//! moto server that creates and reads back an Aurora DSQL cluster through aws-sdk-dsql.

use aws_sdk_dsql::types::ClusterStatus;

#[tokio::test]
async fn postgres_answers_and_keeps_what_it_is_given() {
    let config = tdsql_test_support::fresh_database("harness_pg").await;
    let client = tdsql_test_support::connect(&config).await;
    let version: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert!(major >= 15, "PostgreSQL {version} is older than the 15 the suite is written for");

    client.batch_execute("CREATE TABLE kept (id UUID PRIMARY KEY, data BYTEA NOT NULL)").await.unwrap();
    let id = "6f1c2a9e-2b1d-4c3e-9f00-0123456789ab";
    client
        .execute("INSERT INTO kept VALUES ($1::text::uuid, $2)", &[&id, &b"payload".as_slice()])
        .await
        .unwrap();
    let row = client.query_one("SELECT id::text, data FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), id);
    assert_eq!(row.get::<_, Vec<u8>>(1), b"payload");
}

#[tokio::test]
async fn moto_creates_and_reads_back_a_dsql_cluster() {
    let sdk = tdsql_test_support::aws_config("us-east-1").await;
    let dsql = aws_sdk_dsql::Client::new(&sdk);
    let created = dsql
        .create_cluster()
        .deletion_protection_enabled(false)
        .tags("Project", "harness-proof")
        .send()
        .await
        .expect("CreateCluster on moto");
    let id = created.identifier().to_owned();
    assert_eq!(id.len(), 26, "cluster ids are 26 characters: {id}");

    let got = dsql.get_cluster().identifier(&id).send().await.expect("GetCluster on moto");
    assert_eq!(got.identifier(), id);
    assert_eq!(got.status(), &ClusterStatus::Active);
    assert!(got.arn().ends_with(&format!("cluster/{id}")), "{}", got.arn());
    let tags = got.tags().expect("tags are returned");
    assert_eq!(tags.get("Project").map(String::as_str), Some("harness-proof"));

    dsql.delete_cluster().identifier(&id).send().await.expect("DeleteCluster on moto");
}
