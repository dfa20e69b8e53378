//! getAvailableTemplates end to end through the routers: local folder and S3 (moto).

use hostfactory_tests::{get, new_bucket, put_object, sdk_config, template_ids as ids, templates_config as config, unique};
use serde_json::{Value, json};
use shared::api::{Group, function_router, local_router};
use shared::app::AppState;
use shared::config::{Config, Runtime, TemplatesLocation};

const SAMPLE: &str = include_str!("../../infra/templates/awsprov_templates.json");

fn sample_ids() -> Vec<String> {
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    ids(&sample).into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn s3_templates_are_served_through_the_lambda_router() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "conf/awsprov_templates.json", SAMPLE).await;
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: "conf/".into() };
    let router = function_router(Group::Templates, AppState::new(config(templates), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["message"], "Get available templates success.");
    assert_eq!(ids(&response.body), sample_ids());
    let first = &response.body["templates"][0];
    assert_eq!(first["maxNumber"], 50);
    assert_eq!(first["attributes"]["nram"], json!(["Numeric", "4096"]));
    assert_eq!(first["attributes"]["type"], json!(["String", "X86_64"]));
    assert_eq!(first["sourceFile"], "awsprov_templates.json");
}

#[tokio::test]
async fn the_sample_event_is_answered_by_the_lambda_router() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsinstprov_templates.json", SAMPLE).await;
    let templates = TemplatesLocation::S3 { bucket, prefix: String::new() };
    let router = function_router(Group::Templates, AppState::new(config(templates), &sdk));

    let response =
        hostfactory_tests::invoke_event(&router, include_str!("../../events/get-available-templates.json")).await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), sample_ids());
    assert_eq!(response.body["templates"][0]["sourceFile"], "awsinstprov_templates.json");
    assert_eq!(response.headers["x-request-id"], "Jv5m8hXXIAMEVGA=", "API Gateway's request id is logged and echoed");

    let health = hostfactory_tests::invoke_event(&router, include_str!("../../events/health.json")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
}

#[tokio::test]
async fn a_missing_bucket_is_an_aws_error_with_context() {
    let sdk = sdk_config().await;
    let bucket = unique("hf-missing");
    let templates = TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() };
    let router = function_router(Group::Templates, AppState::new(config(templates), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 502, "{}", response.body);
    let message = response.message();
    assert!(message.contains(&format!("listing s3://{bucket}/")) && message.contains("NoSuchBucket"), "{message}");
}

#[tokio::test]
async fn the_local_folder_serves_the_sample_through_the_local_router() {
    let sdk = sdk_config().await;
    let router = local_router(AppState::new(Config::from_lookup(Runtime::Local, |_| None).unwrap(), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), sample_ids());
    assert!(response.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn the_provider_instance_selects_its_own_file() {
    let sdk = sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("awsprov_templates.json"), SAMPLE).unwrap();
    let own = json!({"templates": [{"templateId": "Own", "maxNumber": 3, "imageId": "ami-1", "vmType": "t3.micro",
        "subnetId": "subnet-1", "attributes": {"type": "X86_64", "ncpus": 1, "ncores": 1, "nram": 512}}]});
    std::fs::write(folder.path().join("gridprov_templates.json"), own.to_string()).unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(folder.path().into())), &sdk));

    let by_header = get(&router, "/api/v1/templates", &[("X-HF-Provider-Name", "grid")]).await;
    let by_query = get(&router, "/api/v1/templates?provider=grid", &[]).await;
    let default = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(ids(&by_header.body), ["Own"]);
    assert_eq!(by_header.body["templates"][0]["attributes"]["ncpus"], json!(["Numeric", "1"]), "plain values become tuples");
    assert_eq!(ids(&by_query.body), ["Own"]);
    assert_eq!(ids(&default.body), sample_ids(), "awsinst falls back to IBM's awsprov_templates.json");
}

#[tokio::test]
async fn bad_input_and_unusable_configuration_are_clear_errors() {
    let sdk = sdk_config().await;
    let empty = tempfile::tempdir().unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(empty.path().into())), &sdk));

    let bad_provider = get(&router, "/api/v1/templates?provider=../etc", &[]).await;
    assert_eq!(bad_provider.status, 400);
    assert!(bad_provider.message().starts_with("provider: "), "{}", bad_provider.message());

    let bad_header = get(&router, "/api/v1/templates", &[("x-hf-provider-name", "a b")]).await;
    assert_eq!(bad_header.status, 400);
    assert!(bad_header.message().starts_with("x-hf-provider-name: "), "{}", bad_header.message());

    let nothing = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(nothing.status, 500, "never an empty list: {}", nothing.body);
    assert!(nothing.message().contains("awsprov_templates.json"), "{}", nothing.message());

    let no_route = get(&router, "/api/v1/nothing", &[]).await;
    assert_eq!(no_route.status, 404);
    assert_eq!(no_route.message(), "route 'GET /api/v1/nothing' not found");

    let request = http::Request::delete("/api/v1/health").body(axum::body::Body::empty()).unwrap();
    let wrong_method = hostfactory_tests::send(&router, request).await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.message().contains("DELETE"));
}

#[tokio::test]
async fn a_broken_template_file_names_the_file_and_field() {
    let sdk = sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("awsprov_templates.json"),
        r#"{"templates": [{"templateId": "A", "maxNumber": "many", "attributes": {}}]}"#,
    )
    .unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(folder.path().into())), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 500);
    let message = response.message();
    assert!(message.contains("awsprov_templates.json: templates[0].maxNumber (template 'A'): invalid type"), "{message}");
}
