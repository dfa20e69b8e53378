//! Template CRUD and validation: conditional writes in S3 (moto) and in a folder, one 409 for
//! concurrent editors, every validation rule with its message.

use hostfactory_tests::{
    Response, get, new_bucket, put_object, recording_sdk_config, sdk_config, send_json, template_ids as ids, templates_config,
};
use serde_json::{Value, json};
use shared::api::{Group, function_router, local_router};
use shared::app::AppState;
use shared::config::{Config, Runtime, TemplatesLocation};

fn config(templates: TemplatesLocation) -> Config {
    let mut config = templates_config(templates);
    config.templates_cache_ttl = std::time::Duration::from_secs(60);
    config
}

fn template(id: &str, max: i64) -> Value {
    json!({
        "templateId": id, "maxNumber": max, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]}
    })
}

async fn s3_file(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Value {
    let object = s3.get_object().bucket(bucket).key(key).send().await.unwrap();
    serde_json::from_slice(&object.body.collect().await.unwrap().to_vec()).unwrap()
}

fn etag(response: &Response) -> String {
    response.headers["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn s3_crud_writes_the_right_file_and_keeps_the_others_in_order() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    let mut first = template("First", 1);
    first["vendorKey"] = json!({"kept": true});
    put_object(&s3, &bucket, "awsprov_templates.json", json!({"templates": [first, template("Second", 2), template("Third", 3)]}).to_string()).await;
    put_object(&s3, &bucket, "templates.json", json!({"templates": [template("Base", 9)]}).to_string()).await;
    let router = function_router(Group::Templates, AppState::new(config(TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() }), &sdk));
    assert_eq!(ids(&get(&router, "/api/v1/templates", &[]).await.body), ["First", "Second", "Third", "Base"]);

    // Update: stays in the file it came from, at its position; the cache is invalidated.
    let update = send_json(&router, "PUT", "/api/v1/templates/Second", &template("Second", 20), &[]).await;
    assert_eq!(update.status, 200, "{}", update.body);
    assert_eq!(update.body["sourceFile"], "awsprov_templates.json");
    assert_eq!(update.body["created"], false);
    let stock = s3_file(&s3, &bucket, "awsprov_templates.json").await;
    assert_eq!(ids(&stock), ["First", "Second", "Third"]);
    assert_eq!(stock["templates"][1]["maxNumber"], 20);
    assert_eq!(stock["templates"][0]["vendorKey"], json!({"kept": true}), "other templates untouched");
    let listed = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(listed.body["templates"][1]["maxNumber"], 20, "cache invalidated by the write");

    // Create: the prov level's existing file (IBM's stock one here), appended.
    let mut created = template("New", 4);
    created.as_object_mut().unwrap().remove("templateId");
    let create = send_json(&router, "PUT", "/api/v1/templates/New", &created, &[]).await;
    assert_eq!(create.status, 201, "{}", create.body);
    assert_eq!(create.body["sourceFile"], "awsprov_templates.json");
    assert_eq!(ids(&s3_file(&s3, &bucket, "awsprov_templates.json").await), ["First", "Second", "Third", "New"]);

    // Create at another level: a new file, created with If-None-Match: *.
    let inst = send_json(&router, "PUT", "/api/v1/templates/Base?level=inst", &template("Base", 1), &[]).await;
    assert_eq!(inst.status, 201, "{}", inst.body);
    assert_eq!(inst.body["sourceFile"], "awsinstinst_templates.json");
    let listed = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(ids(&listed.body), ["Base", "First", "Second", "Third", "New"]);

    // Read one: as written, effective view, and the file version.
    let one = get(&router, "/api/v1/templates/First", &[]).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["template"]["vendorKey"], json!({"kept": true}));
    assert_eq!(one.body["effective"]["providerApi"], "RunInstances");
    assert_eq!(one.body["sourceFile"], "awsprov_templates.json");
    assert!(etag(&one).starts_with('"'));

    // Delete: from the file it resolves to; the lower definition shows again.
    let delete = send_json(&router, "DELETE", "/api/v1/templates/Base", &Value::Null, &[]).await;
    assert_eq!(delete.status, 200, "{}", delete.body);
    assert_eq!(delete.body["sourceFile"], "awsinstinst_templates.json");
    let listed = get(&router, "/api/v1/templates", &[]).await;
    assert_eq!(ids(&listed.body), ["First", "Second", "Third", "New", "Base"]);
    assert_eq!(listed.body["templates"][4]["maxNumber"], 9);

    let missing = send_json(&router, "DELETE", "/api/v1/templates/Nope", &Value::Null, &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "template 'Nope' not found");
    assert_eq!(get(&router, "/api/v1/templates/Nope", &[]).await.status, 404);
}

#[tokio::test]
async fn concurrent_editors_of_one_version_get_exactly_one_409() {
    let (sdk, log) = recording_sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "awsprov_templates.json", json!({"templates": [template("Shared", 1)]}).to_string()).await;
    let router = function_router(Group::Templates, AppState::new(config(TemplatesLocation::S3 { bucket: bucket.clone(), prefix: String::new() }), &sdk));
    let read = get(&router, "/api/v1/templates/Shared", &[]).await;
    let version = etag(&read);

    let (ten, twenty, headers) = (template("Shared", 10), template("Shared", 20), [("If-Match", version.as_str())]);
    let (a, b) = tokio::join!(
        send_json(&router, "PUT", "/api/v1/templates/Shared", &ten, &headers),
        send_json(&router, "PUT", "/api/v1/templates/Shared", &twenty, &headers),
    );

    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "a: {} b: {}", a.body, b.body);
    let (winner, loser) = if a.status == 200 { (&a, &b) } else { (&b, &a) };
    assert!(loser.message().contains("awsprov_templates.json"), "{}", loser.message());
    let stored = s3_file(&s3, &bucket, "awsprov_templates.json").await;
    let expected = if std::ptr::eq(winner, &a) { 10 } else { 20 };
    assert_eq!(stored["templates"][0]["maxNumber"], expected, "the winner's write is the one stored");
    assert!(log.calls().iter().any(|c| c.method == "PUT" && c.status == 200), "writes went to S3");

    // A stale version is refused; the current one is accepted.
    let stale = send_json(&router, "PUT", "/api/v1/templates/Shared", &template("Shared", 30), &[("If-Match", &version)]).await;
    assert_eq!(stale.status, 409);
    let current = etag(&get(&router, "/api/v1/templates/Shared", &[]).await);
    let fresh = send_json(&router, "PUT", "/api/v1/templates/Shared", &template("Shared", 30), &[("If-Match", &current)]).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_ne!(etag(&fresh), current);
}

#[tokio::test]
async fn folder_crud_replaces_files_atomically_and_detects_conflicts() {
    let sdk = sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("awsprov_templates.json"), json!({"templates": [template("A", 1)]}).to_string()).unwrap();
    std::fs::write(folder.path().join("awsinsttype_templates.yaml"), "templates:\n  - {templateId: Y, maxNumber: 1, imageId: ami-1, vmType: c5.large, subnetId: s}\n").unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(folder.path().into())), &sdk));

    let create = send_json(&router, "PUT", "/api/v1/templates/B", &template("B", 2), &[]).await;
    assert_eq!(create.status, 201, "{}", create.body);
    let update = send_json(&router, "PUT", "/api/v1/templates/A", &template("A", 5), &[("If-Match", &etag(&create))]).await;
    assert_eq!(update.status, 200, "{}", update.body);
    let on_disk: Value = serde_json::from_slice(&std::fs::read(folder.path().join("awsprov_templates.json")).unwrap()).unwrap();
    assert_eq!(ids(&on_disk), ["A", "B"]);
    assert_eq!(on_disk["templates"][0]["maxNumber"], 5);
    let leftovers: Vec<_> = std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let stale = send_json(&router, "PUT", "/api/v1/templates/A", &template("A", 6), &[("If-Match", &etag(&create))]).await;
    assert_eq!(stale.status, 409, "{}", stale.body);

    let deleted = send_json(&router, "DELETE", "/api/v1/templates/B", &Value::Null, &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(ids(&get(&router, "/api/v1/templates", &[]).await.body), ["Y", "A"]);

    // YAML files are not rewritten (comments and layout would be lost).
    let yaml = send_json(&router, "PUT", "/api/v1/templates/Y", &template("Y", 3), &[]).await;
    assert_eq!(yaml.status, 422, "{}", yaml.body);
    assert!(yaml.message().contains("awsinsttype_templates.yaml is a YAML file"), "{}", yaml.message());
}

#[tokio::test]
async fn puts_are_validated_before_anything_is_written() {
    let sdk = sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    let router = local_router(AppState::new(config(TemplatesLocation::Folder(folder.path().into())), &sdk));

    let mut bad = template("Bad", 20_000);
    bad["priceType"] = json!("spot");
    bad["providerApi"] = json!("SpotFleet");
    let response = send_json(&router, "PUT", "/api/v1/templates/Bad", &bad, &[]).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.message(),
        "template 'Bad': maxNumber: 20000 must be between -1 and 10000; fleetRole: is required with providerApi SpotFleet (an IAM role ARN)"
    );
    let other_id = send_json(&router, "PUT", "/api/v1/templates/Other", &template("Bad", 1), &[]).await;
    assert_eq!(other_id.status, 400);
    assert_eq!(other_id.message(), "templateId: \"Bad\" does not match the id 'Other' in the path");
    let bad_level = send_json(&router, "PUT", "/api/v1/templates/X?level=top", &template("X", 1), &[]).await;
    assert_eq!(bad_level.status, 400);
    assert!(bad_level.message().starts_with("query: "), "{}", bad_level.message());
    assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0, "nothing written");
}

/// Each rule: a change to a valid template, the field named, and words of the message.
#[tokio::test]
async fn every_validation_rule_is_rejected_with_its_message() {
    let sdk = sdk_config().await;
    let router = local_router(AppState::new(Config::from_lookup(Runtime::Local, |_| None).unwrap(), &sdk));
    let spot = json!({"priceType": "spot", "vmTypes": {"c5.large": 1}});
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"templateId": "has space"}), "templateId", "may only hold letters, digits"),
        (json!({"templateId": "x".repeat(65)}), "templateId", "1 to 64 characters"),
        (json!({"maxNumber": -2}), "maxNumber", "-2 must be between -1 and 10000"),
        (json!({"maxNumber": 10_001}), "maxNumber", "10001 must be between -1 and 10000"),
        (json!({"imageId": null}), "imageId", "is required unless launchTemplateId"),
        (json!({"subnetId": []}), "subnetId", "is required"),
        (json!({"vmType": null}), "vmType", "priceType ondemand needs vmType or vmTypes"),
        (json!({"vmType": null, "priceType": "spot"}), "vmTypes", "priceType spot needs vmTypes or vmType"),
        (json!({"priceType": "heterogeneous", "fleetRole": "r", "providerApi": "RunInstances"}), "providerApi", "cannot mix Spot and On-Demand"),
        (json!({"providerApi": "SpotFleet"}), "fleetRole", "is required with providerApi SpotFleet"),
        (json!({"priceType": "heterogeneous"}), "fleetRole", "is required with providerApi SpotFleet"),
        (json!({"fleetType": "instant"}), "fleetType", "applies to EC2Fleet and SpotFleet only"),
        (json!({"providerApi": "SpotFleet", "fleetRole": "r", "fleetType": "instant"}), "fleetType", "instant is an EC2Fleet type"),
        (json!({"priceType": "sometimes"}), "priceType", "unknown variant `sometimes`"),
        (json!({"providerApi": "Magic"}), "providerApi", "unknown variant `Magic`"),
        (json!({"vmTypes": {"c5.large": 0}}), "vmTypes.c5.large", "0 must be at least 1"),
        (json!({"percentOnDemand": 101}), "percentOnDemand", "101 must be between 0 and 100"),
        (json!({"rootDeviceVolumeSize": 0}), "rootDeviceVolumeSize", "0 GiB must be between 1 and 16384"),
        (json!({"rootDeviceVolumeSize": 16_385}), "rootDeviceVolumeSize", "16385 GiB must be between 1 and 16384"),
        (json!({"iops": 3000}), "iops", "applies only with volumeType io1 or io2"),
        (json!({"iops": 99, "volumeType": "io2"}), "iops", "99 must be between 100 and 64000"),
        (json!({"iops": 64_001, "volumeType": "io1"}), "iops", "64001 must be between 100 and 64000"),
        (json!({"volumeType": "ssd"}), "volumeType", "unknown variant `ssd`"),
        (json!({"spotFleetRequestExpiry": 0}), "spotFleetRequestExpiry", "0 minutes must be greater than 0"),
        (json!({"poolsCount": 0}), "poolsCount", "must be greater than 0"),
        (json!({"maxSpotPrice": 0}), "maxSpotPrice", "must be greater than 0"),
        (json!({"onDemandTargetCapacityRatio": 2.0}), "onDemandTargetCapacityRatio", "must be between 0 and 1"),
        (json!({"requestValidity": "30m"}), "requestValidity", "must be H:MM"),
        (json!({"instanceTags": "a=1;oops"}), "instanceTags", "tag 'oops' is not key=value"),
        (json!({"attributes": {"ncpus": ["Numeric", "0"]}}), "attributes.ncpus", "must be [\"Numeric\""),
        (json!({"maxNumber": null}), "maxNumber", "invalid type"),
    ];
    for (change, field, words) in cases {
        let mut candidate = template("Rule", 1);
        if change.get("priceType") == Some(&json!("spot")) && change.get("vmType").is_none() {
            candidate.as_object_mut().unwrap().extend(spot.as_object().unwrap().clone());
        }
        for (key, value) in change.as_object().unwrap() {
            candidate[key] = value.clone();
        }
        let response = send_json(&router, "POST", "/api/v1/templates/validate", &candidate, &[]).await;
        assert_eq!(response.status, 400, "{change}: {}", response.body);
        assert_eq!(response.body["ok"], false);
        let errors = response.body["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| e["field"] == field && e["problem"].as_str().unwrap().contains(words)),
            "{change}: expected {field}: {words}, got {errors:?}"
        );
    }

    // A missing required key and duplicate ids in one document.
    let mut no_max = template("NoMax", 1);
    no_max.as_object_mut().unwrap().remove("maxNumber");
    let document = json!({"templates": [template("Dup", 1), template("Dup", 2), no_max]});
    let response = send_json(&router, "POST", "/api/v1/templates/validate", &document, &[]).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.message(),
        "templates[1].templateId (template 'Dup'): 'Dup' is already defined earlier in the same file; \
         templates[2].maxNumber (template 'NoMax'): is required"
    );
    assert_eq!(response.body["valid"], json!(["Dup"]));

    // The samples validate cleanly, as a document and one by one.
    let sample: Value = serde_json::from_str(include_str!("../../infra/templates/awsprov_templates.json")).unwrap();
    let ok = send_json(&router, "POST", "/api/v1/templates/validate", &sample, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["ok"], true);
    assert_eq!(ok.body["templates"].as_array().unwrap().len(), 5);
    let single = send_json(&router, "POST", "/api/v1/templates/validate", &sample["templates"][1], &[]).await;
    assert_eq!(single.body["templates"], json!(["Spot-Compute-Mixed"]));
}
