//! A coordination table on moto, as `terraform/shared` creates it (hash key `pk` of type S,
//! on-demand, TTL on `ttl_epoch`); for the coordination tests and benchmark.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};

/// Creates the table `name`.
pub(crate) async fn create_coordination_table(client: &Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating table {name} failed: {e:?}"));
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("ttl_epoch").enabled(true).build().unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("enabling TTL on {name} failed: {e:?}"));
}
