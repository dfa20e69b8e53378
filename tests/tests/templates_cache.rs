//! The warm-process cache: TTL hits; after expiry one S3 ListObjectsV2 of the prefix and a
//! GetObject only of the files whose ETag changed; force_refresh, the folder's mtime check,
//! and the statistics route.

use std::time::Duration;

use hostfactory_tests::{get, new_bucket, put_object, recording_sdk_config, sdk_config, templates_config};
use serde_json::json;
use shared::api::{Group, function_router, local_router};
use shared::app::AppState;
use shared::config::{Config, TemplatesLocation};

const SAMPLE: &str = include_str!("../../infra/templates/awsprov_templates.json");

fn config(templates: TemplatesLocation, ttl_secs: u64) -> Config {
    let mut config = templates_config(templates);
    config.templates_cache_ttl = Duration::from_secs(ttl_secs);
    config
}

#[tokio::test]
async fn an_unchanged_file_is_revalidated_by_the_listing_without_a_get() {
    let (sdk, log) = recording_sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsprov_templates.json", SAMPLE).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() };
    // TTL 0: every listing revalidates.
    let router = function_router(Group::Templates, AppState::new(config(templates, 0), &sdk));
    log.clear();

    let first = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(log.get_objects("/awsprov_templates.json"), (1, 0), "first read transfers the body");
    assert_eq!(log.list_objects(), 1);

    let second = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(second.body, first.body);
    assert_eq!(log.get_objects(""), (1, 0), "the listing shows the ETag held: no GetObject");
    assert_eq!(log.list_objects(), 2);

    put_object(&s3, &bucket, "awsprov_templates.json", SAMPLE.replace("\"maxNumber\": 50", "\"maxNumber\": 51")).await;
    let third = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(third.body["templates"][0]["maxNumber"], 51);
    assert_eq!(log.get_objects("/awsprov_templates.json"), (2, 0), "a changed file is transferred again");
    assert_eq!(log.list_objects(), 3);

    let stats = get(&router, "/api/v1/templates/cache", &[]).await;
    let cache = &stats.body["cache"];
    assert_eq!(cache["misses"], 1);
    assert_eq!(cache["refreshes"], 2);
    assert_eq!(cache["hits"], 0);
    assert_eq!(cache["listings"], 3);
    assert_eq!(cache["notModified"], 1);
    assert_eq!(cache["bodiesFetched"], 2);
    assert_eq!(cache["entries"], 1);
    assert_eq!(cache["ttlSecs"], 0);
    assert!(cache["lastRefreshEpoch"].as_u64().is_some());
    assert_eq!(stats.body["source"], format!("s3://{bucket}/"));
}

#[tokio::test]
async fn within_the_ttl_nothing_is_read_unless_forced() {
    let (sdk, log) = recording_sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsprov_templates.json", SAMPLE).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() };
    let router = function_router(Group::Templates, AppState::new(config(templates, 60), &sdk));

    get(&router, "/api/v1/templates", &[]).await;
    log.clear();
    put_object(&s3, &bucket, "awsprov_templates.json", SAMPLE.replace("\"maxNumber\": 50", "\"maxNumber\": 51")).await;
    log.clear();
    let cached = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(cached.body["templates"][0]["maxNumber"], 50, "served from the cache");
    assert!(log.calls().is_empty(), "no AWS call within the TTL: {:?}", log.calls());

    let forced = get(&router, "/api/v1/templates?force_refresh=true", &[]).await;
    assert_eq!(forced.body["templates"][0]["maxNumber"], 51);
    assert_eq!(log.get_objects("/awsprov_templates.json"), (1, 0));
    assert_eq!(log.list_objects(), 1);

    let bad = get(&router, "/api/v1/templates?force_refresh=maybe", &[]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.message().starts_with("query: "), "{}", bad.message());

    let stats = get(&router, "/api/v1/templates/cache", &[]).await;
    assert_eq!(stats.body["cache"]["hits"], 1);
    assert_eq!(stats.body["cache"]["refreshes"], 1);
}

#[tokio::test]
async fn the_folder_is_revalidated_by_modification_time_and_length() {
    let sdk = sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("awsprov_templates.json");
    std::fs::write(&path, SAMPLE).unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(folder.path().into()), 0), &sdk));

    get(&router, "/api/v1/templates", &[]).await;
    get(&router, "/api/v1/templates", &[]).await;
    let stats = get(&router, "/api/v1/templates/cache", &[]).await;
    assert_eq!(stats.body["cache"]["bodiesFetched"], 1);
    assert_eq!(stats.body["cache"]["notModified"], 1);

    std::fs::write(&path, SAMPLE.replace("\"maxNumber\": 50", "\"maxNumber\": 5")).unwrap();
    let changed = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(changed.body["templates"][0]["maxNumber"], json!(5));
}

/// A file of templates `ids`, each with every attribute set (no EC2 lookup).
fn file(ids: &[&str]) -> String {
    let attributes = json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]});
    let templates: Vec<_> = ids
        .iter()
        .map(|id| json!({"templateId": id, "maxNumber": 1, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1", "attributes": attributes}))
        .collect();
    json!({ "templates": templates }).to_string()
}

/// Lists the templates, expecting `expected`.
async fn listed(router: &axum::Router, expected: &[&str]) {
    let response = get(router, "/api/v1/templates", &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(hostfactory_tests::template_ids(&response.body), expected);
}

#[tokio::test]
async fn s3_costs_one_listing_and_a_get_per_new_or_changed_file() {
    let (sdk, log) = recording_sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&["Stock"])).await;
    put_object(&s3, &bucket, "hf/templates.json", file(&["Shared"])).await;
    // Not read while the JSON file of its level exists (JSON is YAML too).
    put_object(&s3, &bucket, "hf/awsprov_templates.yaml", file(&["Yaml"])).await;
    // Never read: not a template file, in a sub-folder of the prefix, outside the prefix.
    put_object(&s3, &bucket, "hf/notes.txt", "not a template file").await;
    put_object(&s3, &bucket, "hf/old/awsinstinst_templates.json", file(&["Old"])).await;
    put_object(&s3, &bucket, "other/awsinstinst_templates.json", file(&["Other"])).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: "hf/".to_owned() };
    // TTL 0: every listing revalidates.
    let router = function_router(Group::Templates, AppState::new(config(templates, 0), &sdk));
    log.clear();
    listed(&router, &["Stock", "Shared"]).await;
    assert_eq!((log.list_objects(), log.get_objects("")), (1, (2, 0)), "cold: 1 listing + the 2 files used");
    assert_eq!(log.calls().len(), 3, "nothing else: {:?}", log.calls());

    log.clear();
    listed(&router, &["Stock", "Shared"]).await;
    assert_eq!((log.list_objects(), log.get_objects("")), (1, (0, 0)), "unchanged: the listing alone");
    assert_eq!(log.calls().len(), 1);

    put_object(&s3, &bucket, "hf/templates.json", file(&["Shared", "Edited"])).await;
    log.clear();
    listed(&router, &["Stock", "Shared", "Edited"]).await;
    assert_eq!((log.list_objects(), log.get_objects("/hf/templates.json")), (1, (1, 0)), "the edited file alone is read");
    assert_eq!(log.calls().len(), 2);

    s3.delete_object().bucket(&bucket).key("hf/awsprov_templates.json").send().await.unwrap();
    log.clear();
    listed(&router, &["Yaml", "Shared", "Edited"]).await;
    assert_eq!(log.list_objects(), 1);
    assert_eq!(log.get_objects(""), log.get_objects("/hf/awsprov_templates.yaml"), "a removed file is dropped unread");
    assert_eq!(log.get_objects(""), (1, 0), "its level falls to the next name listed");

    let cache = get(&router, "/api/v1/templates/cache", &[]).await.body["cache"].clone();
    assert_eq!((&cache["listings"], &cache["bodiesFetched"], &cache["notModified"]), (&json!(4), &json!(4), &json!(4)));
    assert_eq!(cache["files"], 2);
}
