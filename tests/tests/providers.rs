//! Provider instances at the edges: an unknown one is 404 on every route that needs its templates
//! (no path, no bucket in any answer), a bad name is 400, writes never create a file the caller
//! did not name, deleting the last template leaves no file that fails its provider (and the
//! service's own provider keeps its last one), and the
//! listing keeps `userData` to the single-template route.

use hostfactory_tests::{
    Response, get, new_bucket, new_sqlite_store, put_object, sdk_config, send_json, template_ids as ids,
    templates_config as config,
};
use serde_json::{Value, json};
use shared::api::{Group, function_router, local_router};
use shared::app::AppState;
use shared::config::TemplatesLocation;

fn template(id: &str) -> Value {
    json!({
        "templateId": id, "maxNumber": 2, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1",
        "userData": "BOOTSTRAP_TOKEN=s3cr3t",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]}
    })
}

fn file(ids: &[&str]) -> String {
    json!({"templates": ids.iter().map(|id| template(id)).collect::<Vec<_>>()}).to_string()
}

fn files_in(folder: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A folder router over `files` (name, content) with a fresh SQLite store; the guards keep the
/// folders.
fn folder_router(files: &[(&str, String)], sdk: &aws_config::SdkConfig) -> (axum::Router, Folders) {
    let folder = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(folder.path().join(name), content).unwrap();
    }
    let mut state = AppState::new(config(TemplatesLocation::Folder(folder.path().into())), sdk);
    let (store, store_folder) = new_sqlite_store();
    state.store = store;
    (local_router(state), Folders { templates: folder, _store: store_folder })
}

struct Folders {
    templates: tempfile::TempDir,
    _store: tempfile::TempDir,
}

impl Folders {
    fn path(&self) -> &std::path::Path {
        self.templates.path()
    }
}

/// An answer that shows none of the server's internals.
fn assert_private(response: &Response, secrets: &[&str]) {
    let text = response.body.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// Every route that resolves the provider's templates answers 404 for `nosuch`, by query and by
/// header, naming the instance and nothing else.
async fn assert_unknown_everywhere(router: &axum::Router, secrets: &[&str]) {
    let by_query = get(router, "/api/v1/templates?provider=nosuch", &[]).await;
    let by_header = get(router, "/api/v1/templates", &[("X-HF-Provider-Name", "nosuch")]).await;
    let one = get(router, "/api/v1/templates/Own?provider=nosuch", &[]).await;
    let delete = send_json(router, "DELETE", "/api/v1/templates/Own?provider=nosuch", &Value::Null, &[]).await;
    let machines = json!({"template": {"templateId": "Own", "machineCount": 1}});
    let request = send_json(router, "POST", "/api/v1/requests", &machines, &[("X-HF-Provider-Name", "nosuch")]).await;
    for response in [&by_query, &by_header, &one, &delete, &request] {
        assert_eq!(response.status, 404, "{}", response.body);
        assert_eq!(response.message(), "provider instance 'nosuch' not found");
        assert_private(response, secrets);
    }
}

#[tokio::test]
async fn an_unknown_provider_is_404_in_a_folder_without_the_folder_in_the_answer() {
    let sdk = sdk_config().await;
    let (router, folder) = folder_router(&[("gridprov_templates.json", file(&["Own"]))], &sdk);
    let path = folder.path().to_str().unwrap().to_owned();

    assert_unknown_everywhere(&router, &[&path]).await;
    let grid = get(&router, "/api/v1/templates?provider=grid", &[]).await;
    assert_eq!((grid.status.as_u16(), ids(&grid.body)), (200, vec!["Own"]), "{}", grid.body);

    // The calls that answer from the store keep answering for any instance: machines of a
    // provider whose files are gone can still be polled and returned.
    let status = send_json(&router, "POST", "/api/v1/requests/status?provider=nosuch", &json!({"requests": [{"requestId": "req-1"}]}), &[]).await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["requests"][0]["status"], "complete_with_error");
    let returns = send_json(&router, "POST", "/api/v1/machines/return?provider=nosuch", &json!({"machines": [{"name": "host-1"}]}), &[]).await;
    assert_eq!((returns.status.as_u16(), returns.message()), (200, "No active VM."), "{}", returns.body);
    let reclaimed = send_json(&router, "POST", "/api/v1/machines/return-requests?provider=nosuch", &json!({}), &[]).await;
    assert_eq!(reclaimed.status, 200, "{}", reclaimed.body);
}

#[tokio::test]
async fn an_unknown_provider_is_404_on_s3_without_the_bucket_in_the_answer() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/gridprov_templates.json", file(&["Own"])).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: "hf/".into() };
    // Every route on one router, then the requests function as deployed.
    let router = local_router(AppState::new(config(templates.clone()), &sdk));
    assert_unknown_everywhere(&router, &[&bucket, "s3://"]).await;
    let requests = function_router(Group::Requests, AppState::new(config(templates), &sdk));
    let machines = json!({"template": {"templateId": "Own", "machineCount": 1}});
    let request = send_json(&requests, "POST", "/api/v1/requests?provider=nosuch", &machines, &[]).await;
    assert_eq!((request.status.as_u16(), request.message()), (404, "provider instance 'nosuch' not found"));
    assert_private(&request, &[&bucket, "s3://"]);
    let grid = get(&router, "/api/v1/templates", &[("X-HF-Provider-Name", "grid")]).await;
    assert_eq!((grid.status.as_u16(), ids(&grid.body)), (200, vec!["Own"]), "{}", grid.body);
}

#[tokio::test]
async fn the_service_provider_without_templates_is_a_500_naming_files_never_the_location() {
    let sdk = sdk_config().await;
    let (empty, folder) = folder_router(&[], &sdk);
    let path = folder.path().to_str().unwrap().to_owned();
    let nothing = get(&empty, "/api/v1/templates", &[]).await;
    assert_eq!(nothing.status, 500, "{}", nothing.body);
    assert!(nothing.message().starts_with("configuration error: no templates for provider instance 'awsinst'"), "{}", nothing.message());
    assert!(nothing.message().contains("awsinstprov_templates.json"), "{}", nothing.message());
    assert_private(&nothing, &[&path]);

    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsprov_templates.json", "{\"templates\": [{\"templateId\": \"Broken\"}]}").await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() };
    let router = function_router(Group::Templates, AppState::new(config(templates), &sdk));
    let broken = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(broken.status, 500, "{}", broken.body);
    assert!(broken.message().contains("awsprov_templates.json: templates[0]"), "{}", broken.message());
    assert_private(&broken, &[&bucket, "s3://"]);
}

#[tokio::test]
async fn bad_provider_names_are_400_naming_provider_and_never_reach_a_file() {
    let sdk = sdk_config().await;
    let (router, folder) = folder_router(&[("awsprov_templates.json", file(&["A"]))], &sdk);
    let long = "p".repeat(60_000); // http::Uri takes at most 64 KiB
    for name in ["..%2Fetc", "a%20b", "x.json", &"p".repeat(65), &long] {
        let response = get(&router, &format!("/api/v1/templates?provider={name}"), &[]).await;
        assert_eq!(response.status, 400, "{name}: {}", response.body);
        assert!(response.message().starts_with("provider: "), "{}", response.message());
        assert!(response.message().len() < 400, "the name is echoed bounded: {} bytes", response.message().len());
        let put = send_json(&router, "PUT", &format!("/api/v1/templates/N?provider={name}&level=inst"), &template("N"), &[]).await;
        assert_eq!(put.status, 400, "{}", put.body);
    }
    for name in ["a b", "../etc", "p.q"] {
        let response = get(&router, "/api/v1/templates", &[("X-HF-Provider-Name", name)]).await;
        assert_eq!(response.status, 400, "{name}: {}", response.body);
        assert!(response.message().starts_with("x-hf-provider-name: "), "{}", response.message());
    }
    assert_eq!(files_in(folder.path()), ["awsprov_templates.json"]);
}

#[tokio::test]
async fn a_new_template_needs_a_level_unless_its_prov_file_exists() {
    let sdk = sdk_config().await;
    let (router, folder) = folder_router(&[("templates.json", file(&["Base"]))], &sdk);

    for provider in ["grid", "nosuch"] {
        let put = send_json(&router, "PUT", &format!("/api/v1/templates/New?provider={provider}"), &template("New"), &[]).await;
        assert_eq!(put.status, 400, "{}", put.body);
        assert!(put.message().starts_with("level: template 'New' is new"), "{}", put.message());
        assert!(put.message().contains(&format!("{provider}prov_templates.json")) && put.message().contains("?level="), "{}", put.message());
    }
    assert_eq!(files_in(folder.path()), ["templates.json"], "nothing created");

    // Named: the level's file is created; later new templates go there without a level.
    let created = send_json(&router, "PUT", "/api/v1/templates/New?provider=grid&level=prov", &template("New"), &[]).await;
    assert_eq!((created.status.as_u16(), created.body["sourceFile"].as_str()), (201, Some("gridprov_templates.json")), "{}", created.body);
    let next = send_json(&router, "PUT", "/api/v1/templates/Next?provider=grid", &template("Next"), &[]).await;
    assert_eq!((next.status.as_u16(), next.body["sourceFile"].as_str()), (201, Some("gridprov_templates.json")), "{}", next.body);
    // An update goes to the file the template is in (here the shared default file).
    let base = send_json(&router, "PUT", "/api/v1/templates/Base?provider=grid", &template("Base"), &[]).await;
    assert_eq!((base.status.as_u16(), base.body["sourceFile"].as_str()), (200, Some("templates.json")), "{}", base.body);
    assert_eq!(files_in(folder.path()), ["gridprov_templates.json", "templates.json"]);
    let listed = get(&router, "/api/v1/templates?provider=grid", &[]).await;
    assert_eq!(ids(&listed.body), ["New", "Next", "Base"]);
}

#[tokio::test]
async fn deleting_the_last_template_of_a_folder_file_removes_it_and_the_provider_is_unknown_again() {
    let sdk = sdk_config().await;
    let (router, folder) = folder_router(&[("gridprov_templates.json", file(&["Own"]))], &sdk);

    let created = send_json(&router, "PUT", "/api/v1/templates/New?provider=fresh&level=prov", &template("New"), &[]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(ids(&get(&router, "/api/v1/templates?provider=fresh", &[]).await.body), ["New"]);

    let deleted = send_json(&router, "DELETE", "/api/v1/templates/New?provider=fresh", &Value::Null, &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(deleted.message().contains("the file was removed"), "{}", deleted.message());
    assert!(!deleted.headers.contains_key("etag"), "no version of a removed file");
    assert_eq!(files_in(folder.path()), ["gridprov_templates.json"]);
    for _ in 0..2 {
        let again = get(&router, "/api/v1/templates?provider=fresh&force_refresh=true", &[]).await;
        assert_eq!((again.status.as_u16(), again.message()), (404, "provider instance 'fresh' not found"));
    }
    assert_eq!(ids(&get(&router, "/api/v1/templates?provider=grid", &[]).await.body), ["Own"], "others untouched");

    // A file emptied by an older version, or by hand, does not fail its provider either, and
    // takes new templates without a level.
    std::fs::write(folder.path().join("legacyprov_templates.json"), "{\"templates\": []}").unwrap();
    let legacy = get(&router, "/api/v1/templates?provider=legacy", &[]).await;
    assert_eq!((legacy.status.as_u16(), legacy.message()), (404, "provider instance 'legacy' not found"));
    let refilled = send_json(&router, "PUT", "/api/v1/templates/Back?provider=legacy", &template("Back"), &[]).await;
    assert_eq!((refilled.status.as_u16(), refilled.body["sourceFile"].as_str()), (201, Some("legacyprov_templates.json")));
    assert_eq!(ids(&get(&router, "/api/v1/templates?provider=legacy", &[]).await.body), ["Back"]);
}

/// The service's own provider instance (`HF_PROVIDER_NAME`) with no template would fail every
/// call, so its last template is kept: 409 naming why, the file untouched, the listing intact.
#[tokio::test]
async fn the_last_template_of_the_services_own_provider_is_not_deleted() {
    let sdk = sdk_config().await;
    let (router, folder) = folder_router(&[("awsinstprov_templates.json", file(&["Only", "Other"]))], &sdk);
    let first = send_json(&router, "DELETE", "/api/v1/templates/Other", &Value::Null, &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let before = std::fs::read_to_string(folder.path().join("awsinstprov_templates.json")).unwrap();

    let last = send_json(&router, "DELETE", "/api/v1/templates/Only", &Value::Null, &[]).await;
    assert_eq!(last.status, 409, "{}", last.body);
    assert!(last.message().contains("the only template of provider instance 'awsinst'"), "{}", last.message());
    assert_eq!(std::fs::read_to_string(folder.path().join("awsinstprov_templates.json")).unwrap(), before);
    let listed = get(&router, "/api/v1/templates?force_refresh=true", &[]).await;
    assert_eq!((listed.status.as_u16(), ids(&listed.body)), (200, vec!["Only"]));
}

#[tokio::test]
async fn deleting_the_last_template_of_an_s3_file_removes_it_and_the_stock_file_shows_again() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsprov_templates.json", file(&["Stock-1", "Stock-2"])).await;
    put_object(&s3, &bucket, "gridprov_templates.json", file(&["Own"])).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() };
    let router = function_router(Group::Templates, AppState::new(config(templates), &sdk));
    assert_eq!(ids(&get(&router, "/api/v1/templates?provider=grid", &[]).await.body), ["Own"], "the own prov file shadows the stock one");

    // A stale version removes nothing.
    let stale = send_json(&router, "DELETE", "/api/v1/templates/Own?provider=grid", &Value::Null, &[("If-Match", "\"stale\"")]).await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    let deleted = send_json(&router, "DELETE", "/api/v1/templates/Own?provider=grid", &Value::Null, &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let gone = s3.head_object().bucket(&bucket).key("gridprov_templates.json").send().await;
    assert!(gone.is_err_and(|e| e.raw_response().is_some_and(|r| r.status().as_u16() == 404)), "the object is deleted");
    let grid = get(&router, "/api/v1/templates?provider=grid", &[]).await;
    assert_eq!((grid.status.as_u16(), ids(&grid.body)), (200, vec!["Stock-1", "Stock-2"]), "{}", grid.body);
}

#[tokio::test]
async fn the_listing_omits_user_data_which_the_template_route_keeps() {
    let sdk = sdk_config().await;
    let (router, _folder) = folder_router(&[("awsprov_templates.json", file(&["A", "B"]))], &sdk);

    let listed = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(ids(&listed.body), ["A", "B"]);
    assert!(!listed.body.to_string().contains("s3cr3t"), "{}", listed.body);
    assert!(listed.body["templates"].as_array().unwrap().iter().all(|t| t.get("userData").is_none()));
    assert_eq!(listed.body["templates"][0]["vmType"], "c5.large", "the other keys stay");

    let one = get(&router, "/api/v1/templates/A", &[]).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["template"]["userData"], "BOOTSTRAP_TOKEN=s3cr3t");
    assert_eq!(one.body["effective"]["userData"], "BOOTSTRAP_TOKEN=s3cr3t");
}

#[tokio::test]
async fn the_cache_keeps_a_bounded_number_of_provider_instances() {
    let sdk = sdk_config().await;
    let (router, _folder) = folder_router(&[("awsprov_templates.json", file(&["A"]))], &sdk);
    for i in 0..1100 {
        let listed = get(&router, &format!("/api/v1/templates?provider=p{i}"), &[]).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
    }
    let stats = get(&router, "/api/v1/templates/cache", &[]).await;
    assert_eq!(stats.body["cache"]["misses"], 1100);
    let entries = stats.body["cache"]["entries"].as_u64().unwrap();
    assert!(entries <= 1024, "{entries} provider instances cached");
}
