//! The results table's definition: key schema, attribute types, the label
//! index, the sparse status index and the TTL attribute. Local tooling and tests create the table from this; the Terraform
//! in `infra/` declares the same, and a contract test compares the two.

use crate::schema::{
    attr, LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK, PK, SK, STATUS_INDEX, STATUS_INDEX_PK,
    STATUS_INDEX_SK,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

/// Attribute definitions: `(name, type)` of every key attribute.
pub const KEY_ATTRIBUTES: [(&str, &str); 6] = [
    (PK, "S"),
    (SK, "S"),
    (LABEL_INDEX_PK, "S"),
    (LABEL_INDEX_SK, "N"),
    (STATUS_INDEX_PK, "S"),
    (STATUS_INDEX_SK, "S"),
];

/// Global secondary indexes: `(name, hash key, range key)`, projection ALL.
pub const INDEXES: [(&str, &str, &str); 2] = [
    (LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK),
    (STATUS_INDEX, STATUS_INDEX_PK, STATUS_INDEX_SK),
];

/// The attribute DynamoDB's time to live reads (tombstones expire).
pub const TTL_ATTRIBUTE: &str = attr::EXPIRES_AT;

fn attribute(name: &str, kind: &str) -> AttributeDefinition {
    let kind = match kind {
        "N" => ScalarAttributeType::N,
        _ => ScalarAttributeType::S,
    };
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

/// A CreateTable request for the results table (on-demand billing).
pub fn create_table_request(
    client: &Client,
    table: &str,
) -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range));
    for (name, hash, range) in INDEXES {
        let index = GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash))
            .key_schema(key(range, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .expect("index name and key schema are set");
        request = request.global_secondary_indexes(index);
    }
    for (name, kind) in KEY_ATTRIBUTES {
        request = request.attribute_definitions(attribute(name, kind));
    }
    request
}

/// Turns on the TTL of [`TTL_ATTRIBUTE`] (after [`create_table_request`]).
pub fn enable_ttl_request(
    client: &Client,
    table: &str,
) -> aws_sdk_dynamodb::operation::update_time_to_live::builders::UpdateTimeToLiveFluentBuilder {
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .expect("enabled and attribute name are set"),
        )
}
