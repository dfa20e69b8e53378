//! The warm-process cache: TTL hits, S3 conditional GETs (304, no body) after expiry,
//! force_refresh, the folder's mtime check, and the statistics route.

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
async fn an_unchanged_file_is_revalidated_with_304_and_no_body() {
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

    let second = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(second.body, first.body);
    assert_eq!(log.get_objects("/awsprov_templates.json"), (1, 1), "second read is a 304 without body");

    put_object(&s3, &bucket, "awsprov_templates.json", SAMPLE.replace("\"maxNumber\": 50", "\"maxNumber\": 51")).await;
    let third = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(third.body["templates"][0]["maxNumber"], 51);
    assert_eq!(log.get_objects("/awsprov_templates.json"), (2, 1), "a changed file is transferred again");

    let stats = get(&router, "/api/v1/templates/cache", &[]).await;
    let cache = &stats.body["cache"];
    assert_eq!(cache["misses"], 1);
    assert_eq!(cache["refreshes"], 2);
    assert_eq!(cache["hits"], 0);
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
