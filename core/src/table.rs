//! The results table's definition: key schema, attribute types and the label
//! index. Local tooling and tests create the table from this; the Terraform
//! in `infra/` declares the same, and a contract test compares the two.

use crate::schema::{LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK, PK, SK};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

/// Attribute definitions: `(name, type)` of every key attribute.
pub const KEY_ATTRIBUTES: [(&str, &str); 4] = [
    (PK, "S"),
    (SK, "S"),
    (LABEL_INDEX_PK, "S"),
    (LABEL_INDEX_SK, "N"),
];

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
    let index = GlobalSecondaryIndex::builder()
        .index_name(LABEL_INDEX)
        .key_schema(key(LABEL_INDEX_PK, KeyType::Hash))
        .key_schema(key(LABEL_INDEX_SK, KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .expect("index name and key schema are set");
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .global_secondary_indexes(index);
    for (name, kind) in KEY_ATTRIBUTES {
        request = request.attribute_definitions(attribute(name, kind));
    }
    request
}
