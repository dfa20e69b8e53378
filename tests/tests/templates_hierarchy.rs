//! Discovery and merge against moto S3: the four levels, IBM's stock file, YAML, snake_case,
//! graceful degradation, attributes from DescribeInstanceTypes and availableNumber.


use hostfactory_tests::{get, new_bucket, put_object, recording_sdk_config, sdk_config, template_ids as ids, templates_config};
use serde_json::{Value, json};
use shared::api::{Group, function_router};
use shared::app::AppState;
use shared::config::{Config, TemplatesLocation};
use shared::store::capacity_key;

fn config(bucket: &str) -> Config {
    templates_config(TemplatesLocation::S3 { bucket: bucket.to_owned(), prefix: "hf/".into() })
}

/// A complete on-demand template with explicit attributes.
fn template(id: &str, max: i64, marker: &str) -> Value {
    json!({
        "templateId": id, "maxNumber": max, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1",
        "marker": marker,
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]}
    })
}

fn file(templates: &[Value]) -> String {
    json!({ "templates": templates }).to_string()
}

fn by_id<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["templates"].as_array().unwrap().iter().find(|t| t["templateId"] == id).unwrap()
}

#[tokio::test]
async fn four_levels_override_by_priority_and_keep_a_stable_order() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/templates.json", file(&[template("D", 1, "default"), template("A", 1, "default"), template("Only-Default", 1, "default")])).await;
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&[template("A", 2, "stock"), template("B", 2, "stock")])).await;
    put_object(&s3, &bucket, "hf/gridtype_templates.json", file(&[template("B", 3, "type"), template("C", 3, "type")])).await;
    put_object(&s3, &bucket, "hf/gridinst_templates.json", file(&[template("C", 4, "inst")])).await;
    let router = function_router(Group::Templates, AppState::new(config(&bucket), &sdk));

    let grid = get(&router, "/api/v1/templates?provider=grid", &[]).await;
    assert_eq!(grid.status, 200, "{}", grid.body);
    assert_eq!(ids(&grid.body), ["C", "B", "A", "D", "Only-Default"], "file priority, then file order");
    for (id, marker, file) in [
        ("C", "inst", "gridinst_templates.json"),
        ("B", "type", "gridtype_templates.json"),
        ("A", "stock", "awsprov_templates.json"),
        ("D", "default", "templates.json"),
    ] {
        assert_eq!(by_id(&grid.body, id)["marker"], marker, "{id}");
        assert_eq!(by_id(&grid.body, id)["sourceFile"], file, "{id}");
    }

    // The provider's own prov file replaces IBM's stock file at the prov level.
    put_object(&s3, &bucket, "hf/gridprov_templates.json", file(&[template("A", 5, "prov")])).await;
    let grid = get(&router, "/api/v1/templates?provider=grid&force_refresh=true", &[]).await;
    assert_eq!(ids(&grid.body), ["C", "B", "A", "D", "Only-Default"]);
    assert_eq!(by_id(&grid.body, "A")["marker"], "prov");
    assert_eq!(by_id(&grid.body, "A")["sourceFile"], "gridprov_templates.json");

    // Another provider instance sees only the shared files.
    let other = get(&router, "/api/v1/templates", &[("X-HF-Provider-Name", "other")]).await;
    assert_eq!(ids(&other.body), ["A", "B", "D", "Only-Default"]);
}

#[tokio::test]
async fn yaml_and_snake_case_files_load_and_json_wins_over_yaml() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    let yaml = r#"
templates:
  - template_id: Snake
    max_number: 7
    price_type: spot
    image_id: ami-1
    vm_types: {c5.large: 1, c5.xlarge: 2}
    subnet_id: subnet-1,subnet-2
    instance_tags: {Team: grid, Cost: 42}
    attributes: {type: X86_64, ncpus: 1, ncores: 1, nram: 4096}
"#;
    put_object(&s3, &bucket, "hf/awsinstinst_templates.yaml", yaml).await;
    put_object(&s3, &bucket, "hf/awsinsttype_templates.yml", file(&[template("Shadowed", 1, "yml")])).await;
    put_object(&s3, &bucket, "hf/awsinsttype_templates.json", file(&[template("Camel", 1, "json")])).await;
    let router = function_router(Group::Templates, AppState::new(config(&bucket), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), ["Snake", "Camel"], "the .json file of a level wins over .yml");
    let snake = by_id(&response.body, "Snake");
    assert_eq!(snake["maxNumber"], 7);
    assert_eq!(snake["priceType"], "spot");
    assert_eq!(snake["providerApi"], "EC2Fleet");
    assert_eq!(snake["subnetId"], json!(["subnet-1", "subnet-2"]));
    assert_eq!(snake["instanceTags"], "Team=grid;Cost=42");
    assert_eq!(snake["vmTypes"], json!({"c5.large": 1, "c5.xlarge": 2}));
    assert_eq!(snake["attributes"]["ncpus"], json!(["Numeric", "1"]));
    assert_eq!(snake["sourceFile"], "awsinstinst_templates.yaml");
    assert!(snake.get("max_number").is_none(), "output is camelCase only");
}

#[tokio::test]
async fn a_broken_file_and_a_bad_entry_are_reported_while_the_rest_load() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/awsinstinst_templates.json", "{\"templates\": [\n  {\"templateId\": \"X\" \"maxNumber\": 1}\n]}").await;
    let mut bad = template("Bad", 20_000, "prov");
    bad["fleetRole"] = json!(null);
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&[template("Good", 1, "prov"), bad, template("Good-2", 1, "prov")])).await;
    put_object(&s3, &bucket, "hf/templates.json", file(&[template("Bad", 1, "default")])).await;
    let router = function_router(Group::Templates, AppState::new(config(&bucket), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(ids(&response.body), ["Good", "Good-2"], "a skipped override never falls back to a lower file");
    let warnings: Vec<&str> = response.body["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("awsinstinst_templates.json: file: line 2, column 22: invalid JSON"), "{warnings:?}");
    assert_eq!(warnings[1], "awsprov_templates.json: templates[1].maxNumber (template 'Bad'): 20000 must be between -1 and 10000");
    assert!(response.message().contains("2 problem(s) skipped"), "{}", response.message());
}

#[tokio::test]
async fn nothing_usable_is_an_error_never_an_empty_list() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/awsprov_templates.json", "templates: [").await;
    put_object(&s3, &bucket, "hf/templates.json", file(&[json!({"templateId": "T", "maxNumber": 1})])).await;
    let router = function_router(Group::Templates, AppState::new(config(&bucket), &sdk));

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 500, "{}", response.body);
    let message = response.message();
    assert!(message.contains("no usable templates for provider instance 'awsinst'"), "{message}");
    assert!(message.contains("awsprov_templates.json: file: line 1, column "), "{message}");
    assert!(message.contains("templates.json: templates[0].imageId (template 'T'): is required"), "{message}");
}

#[tokio::test]
async fn attributes_come_from_describe_instance_types_in_one_call_and_explicit_ones_win() {
    let (sdk, log) = recording_sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    let bare = |id: &str, types: Value| {
        let mut t = json!({"templateId": id, "maxNumber": 4, "imageId": "ami-1", "subnetId": "subnet-1", "priceType": "spot"});
        t.as_object_mut().unwrap().extend(types.as_object().unwrap().clone());
        t
    };
    let mut partly = bare("Partly-Explicit", json!({"vmType": "m5.2xlarge"}));
    partly["attributes"] = json!({"nram": ["Numeric", "30000"], "type": ["String", "NTX64"]});
    let templates = [
        bare("C5", json!({"vmType": "c5.large"})),
        bare("Graviton", json!({"vmType": "m7g.xlarge"})),
        bare("Mixed", json!({"vmTypes": {"m5.2xlarge": 2, "c5.xlarge": 1, "m5.xlarge": 1}})),
        partly,
        template("Explicit", 1, "explicit"),
        bare("Unknown-Type", json!({"vmType": "zz9.huge"})),
    ];
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&templates)).await;
    let router = function_router(Group::Templates, AppState::new(config(&bucket), &sdk));
    log.clear();

    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(response.status, 200, "{}", response.body);
    let attributes = |id: &str| by_id(&response.body, id)["attributes"].clone();
    let tuple = |kind: &str, value: &str| json!([kind, value]);
    // c5.large: 2 vCPUs, 1 core x 2 threads, 4096 MiB.
    assert_eq!(
        attributes("C5"),
        json!({"type": tuple("String", "X86_64"), "ncpus": tuple("Numeric", "1"), "ncores": tuple("Numeric", "1"), "nram": tuple("Numeric", "4096")})
    );
    // m7g.xlarge: 4 vCPUs = 4 cores (no SMT on Graviton), 16384 MiB, arm64.
    assert_eq!(
        attributes("Graviton"),
        json!({"type": tuple("String", "LINUX_ARM64"), "ncpus": tuple("Numeric", "4"), "ncores": tuple("Numeric", "4"), "nram": tuple("Numeric", "16384")})
    );
    // vmTypes: the smallest (c5.xlarge: 4 vCPUs, 8 GiB; m5.xlarge has 16 GiB) describes the template.
    assert_eq!(attributes("Mixed")["ncpus"], tuple("Numeric", "2"));
    assert_eq!(attributes("Mixed")["nram"], tuple("Numeric", "8192"));
    // Explicit attributes win; only the missing ones are derived (m5.2xlarge: 4 cores).
    assert_eq!(
        attributes("Partly-Explicit"),
        json!({"type": tuple("String", "NTX64"), "ncpus": tuple("Numeric", "4"), "ncores": tuple("Numeric", "4"), "nram": tuple("Numeric", "30000")})
    );
    assert_eq!(attributes("Explicit")["nram"], tuple("Numeric", "4096"));
    assert_eq!(ids(&response.body), ["C5", "Graviton", "Mixed", "Partly-Explicit", "Explicit"]);
    let warnings = response.body["warnings"].to_string();
    assert!(warnings.contains("vmType (template 'Unknown-Type'): 'zz9.huge' is not an EC2 instance type"), "{warnings}");
    assert_eq!(log.actions("DescribeInstanceTypes"), 1, "one batched call for every missing type");

    // Specs are cached for the process: a full reload costs no EC2 call.
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&templates[..3])).await;
    let again = get(&router, "/api/v1/templates?force_refresh=true", &[]).await;
    assert_eq!(ids(&again.body), ["C5", "Graviton", "Mixed"]);
    assert_eq!(log.actions("DescribeInstanceTypes"), 1);
}

#[tokio::test]
async fn available_number_is_max_number_minus_capacity_in_use() {
    let sdk = sdk_config().await;
    let (s3, bucket) = new_bucket(&sdk).await;
    put_object(&s3, &bucket, "hf/awsprov_templates.json", file(&[template("Busy", 10, ""), template("Full", 2, ""), template("Idle", -1, "")])).await;
    let (store, _folder) = hostfactory_tests::new_sqlite_store();
    store.capacity.reserve(&capacity_key("awsinst", "Busy"), "reserve:busy", 3, 10).await.unwrap();
    // Fleets can overshoot maxNumber; the counter then holds more than the maximum.
    store.capacity.reserve(&capacity_key("awsinst", "Full"), "reserve:full", 5, -1).await.unwrap();
    store.capacity.reserve(&capacity_key("other", "Idle"), "reserve:idle", 7, -1).await.unwrap();
    let mut state = AppState::new(config(&bucket), &sdk);
    state.store = store;
    let router = function_router(Group::Templates, state);
    let response = get(&router, "/api/v1/templates", &[]).await;

    assert_eq!(by_id(&response.body, "Busy")["availableNumber"], 7);
    assert_eq!(by_id(&response.body, "Full")["availableNumber"], 0, "never negative");
    assert_eq!(by_id(&response.body, "Idle")["availableNumber"], 10_000, "-1 is the spec's 10000 cap");
}
