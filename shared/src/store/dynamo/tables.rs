//! The DynamoDB tables, defined once: `create_tables` builds them (tests on moto, the
//! `hostfactory create-tables` command) and a test holds `template.yaml` to the same keys and
//! indexes, so the two cannot drift.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TimeToLiveSpecification,
};

use crate::error::{Error, Result};

/// Secondary index: name, partition key, optional sort key. Projections are ALL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// `{prefix}{suffix}` is the table name.
    pub suffix: &'static str,
    pub key: &'static str,
    /// Every key attribute of the table and its indexes, with its type (`S` or `N`).
    pub attributes: &'static [(&'static str, &'static str)],
    pub indexes: &'static [IndexDef],
    /// TTL attribute, if finished items expire.
    pub ttl: Option<&'static str>,
}

impl TableDef {
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.suffix)
    }
}

/// The sparse index of unfinished requests; its partition value is [`ACTIVE`].
pub const ACTIVE_INDEX: &str = "active-index";
/// The one value of the `active` attribute (present only while a request is unfinished).
pub const ACTIVE: &str = "1";
pub const REQUEST_INDEX: &str = "request-index";
pub const RETURN_INDEX: &str = "return-index";
pub const NAME_INDEX: &str = "name-index";
/// Sparse: only machines with `reclaimedAt` (the cloud is taking them back) are in it.
pub const RECLAIM_INDEX: &str = "reclaim-index";
/// Machines by `templateId` and `provider`: the reconciler's capacity recount, and listings.
pub const TEMPLATE_INDEX: &str = "template-index";
/// Every machine of a provider instance, by `machineId`: `GET /api/v1/machines` pages.
pub const PROVIDER_INDEX: &str = "provider-index";
/// Sparse: only counters carry `itemType` (operation markers do not).
pub const COUNTER_INDEX: &str = "counter-index";
/// The one value of `itemType`.
pub const COUNTER: &str = "counter";

pub const REQUESTS: TableDef = TableDef {
    suffix: "_requests",
    key: "requestId",
    attributes: &[("requestId", "S"), ("active", "S"), ("createdAt", "N")],
    indexes: &[IndexDef { name: ACTIVE_INDEX, hash: "active", range: Some("createdAt") }],
    ttl: Some("expiresAt"),
};

pub const MACHINES: TableDef = TableDef {
    suffix: "_machines",
    key: "machineId",
    attributes: &[
        ("machineId", "S"),
        ("requestId", "S"),
        ("returnRequestId", "S"),
        ("name", "S"),
        ("provider", "S"),
        ("reclaimedAt", "N"),
        ("templateId", "S"),
    ],
    indexes: &[
        IndexDef { name: REQUEST_INDEX, hash: "requestId", range: None },
        IndexDef { name: RETURN_INDEX, hash: "returnRequestId", range: None },
        IndexDef { name: NAME_INDEX, hash: "name", range: None },
        IndexDef { name: RECLAIM_INDEX, hash: "provider", range: Some("reclaimedAt") },
        IndexDef { name: TEMPLATE_INDEX, hash: "templateId", range: Some("provider") },
        IndexDef { name: PROVIDER_INDEX, hash: "provider", range: Some("machineId") },
    ],
    ttl: Some("expiresAt"),
};

/// The capacity table: per-template capacity counters (`inUse`, `version`, `updatedAt`,
/// `itemType`), and the markers of applied capacity operations (`op#<op id>`, expiring at
/// `expiresAt`). It holds no templates (those live in files): its name `{prefix}_templates` and
/// key `templateKey` stay as the first versions created them, for compatibility with deployed
/// stacks and their data (`template.yaml`'s `TemplatesTable`).
pub const CAPACITY: TableDef = TableDef {
    suffix: "_templates",
    key: "templateKey",
    attributes: &[("templateKey", "S"), ("itemType", "S")],
    indexes: &[IndexDef { name: COUNTER_INDEX, hash: "itemType", range: None }],
    ttl: Some("expiresAt"),
};

pub const TABLES: [TableDef; 3] = [REQUESTS, MACHINES, CAPACITY];

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| Error::store("building a key schema", e))
}

fn create_request(
    client: &Client,
    def: &TableDef,
    name: &str,
) -> Result<aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(def.key, KeyType::Hash)?)
        // Every change, old and new, for the domain events' publisher (`domain_events::stream`).
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| Error::store("building a stream specification", e))?,
        );
    for (attribute, kind) in def.attributes {
        let kind = if *kind == "N" { ScalarAttributeType::N } else { ScalarAttributeType::S };
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(*attribute)
                .attribute_type(kind)
                .build()
                .map_err(|e| Error::store("building an attribute definition", e))?,
        );
    }
    for index in def.indexes {
        let mut builder = GlobalSecondaryIndex::builder()
            .index_name(index.name)
            .key_schema(key(index.hash, KeyType::Hash)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build());
        if let Some(range) = index.range {
            builder = builder.key_schema(key(range, KeyType::Range)?);
        }
        request = request
            .global_secondary_indexes(builder.build().map_err(|e| Error::store("building an index definition", e))?);
    }
    Ok(request)
}

/// Creates the three tables for `prefix` as `template.yaml` defines them (on-demand billing,
/// indexes, TTL, point-in-time recovery), waiting until each is active. Tables that already
/// exist are left as they are, so this is safe to re-run. Returns the names created.
pub async fn create_tables(client: &Client, prefix: &str) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for def in &TABLES {
        let name = def.name(prefix);
        match create_request(client, def, &name)?.send().await {
            Ok(_) => {}
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
                tracing::info!(table = %name, "table exists; left as it is");
                continue;
            }
            Err(err) => return Err(Error::aws(format!("creating table {name}"), err)),
        }
        client
            .wait_until_table_exists()
            .table_name(&name)
            .wait(Duration::from_secs(300))
            .await
            .map_err(|e| Error::store(format!("waiting for table {name} to become active"), e))?;
        if let Some(attribute) = def.ttl {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(|e| Error::store("building a TTL specification", e))?;
            client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| Error::aws(format!("enabling TTL on {name}"), e))?;
        }
        let recovery = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| Error::store("building a recovery specification", e))?;
        client
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(recovery)
            .send()
            .await
            .map_err(|e| Error::aws(format!("enabling point-in-time recovery on {name}"), e))?;
        tracing::info!(table = %name, "table created");
        created.push(name);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    const TEMPLATE: &str = include_str!("../../../../template.yaml");

    /// `!Sub "${TablePrefix}_requests"` parses as a tagged value; its string is what we want.
    fn untag(value: &Value) -> &Value {
        match value {
            Value::Tagged(tagged) => &tagged.value,
            other => other,
        }
    }

    fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
        untag(&value[field]).as_str().unwrap_or_else(|| panic!("{field} is not a string in {value:?}"))
    }

    fn hash_and_range(schema: &Value) -> (String, Option<String>) {
        let elements = schema.as_sequence().expect("KeySchema is a list");
        let find = |kind: &str| {
            elements.iter().find(|e| str_of(e, "KeyType") == kind).map(|e| str_of(e, "AttributeName").to_owned())
        };
        (find("HASH").expect("a HASH key"), find("RANGE"))
    }

    #[test]
    fn template_yaml_defines_the_same_tables() {
        let template: Value = serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml parses");
        let resources = template["Resources"].as_mapping().expect("Resources");
        let tables: Vec<&Value> = resources
            .values()
            .filter(|r| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
            .map(|r| &r["Properties"])
            .collect();
        assert_eq!(tables.len(), TABLES.len(), "one resource per table definition");

        for def in &TABLES {
            let expected_name = format!("${{TablePrefix}}{}", def.suffix);
            let table = tables
                .iter()
                .find(|t| str_of(t, "TableName") == expected_name)
                .unwrap_or_else(|| panic!("template.yaml has no table named {expected_name}"));
            assert_eq!(str_of(table, "BillingMode"), "PAY_PER_REQUEST", "{expected_name}");
            assert_eq!(
                table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
                Some(true),
                "{expected_name}"
            );
            assert_eq!(hash_and_range(&table["KeySchema"]), (def.key.to_owned(), None), "{expected_name} key");

            let mut attributes: Vec<(String, String)> = table["AttributeDefinitions"]
                .as_sequence()
                .expect("AttributeDefinitions")
                .iter()
                .map(|a| (str_of(a, "AttributeName").to_owned(), str_of(a, "AttributeType").to_owned()))
                .collect();
            attributes.sort();
            let mut expected: Vec<(String, String)> =
                def.attributes.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
            expected.sort();
            assert_eq!(attributes, expected, "{expected_name} attribute definitions");

            let mut indexes: Vec<(String, String, Option<String>)> = table["GlobalSecondaryIndexes"]
                .as_sequence()
                .map(|list| {
                    list.iter()
                        .map(|index| {
                            assert_eq!(str_of(&index["Projection"], "ProjectionType"), "ALL");
                            let (hash, range) = hash_and_range(&index["KeySchema"]);
                            (str_of(index, "IndexName").to_owned(), hash, range)
                        })
                        .collect()
                })
                .unwrap_or_default();
            indexes.sort();
            let mut expected: Vec<(String, String, Option<String>)> = def
                .indexes
                .iter()
                .map(|i| (i.name.to_owned(), i.hash.to_owned(), i.range.map(str::to_owned)))
                .collect();
            expected.sort();
            assert_eq!(indexes, expected, "{expected_name} indexes");

            let ttl = &table["TimeToLiveSpecification"];
            let ttl = (ttl["Enabled"].as_bool() == Some(true)).then(|| str_of(ttl, "AttributeName").to_owned());
            assert_eq!(ttl.as_deref(), def.ttl, "{expected_name} TTL");
            assert_eq!(str_of(&table["StreamSpecification"], "StreamViewType"), "NEW_AND_OLD_IMAGES", "{expected_name} stream");
        }
    }
}
