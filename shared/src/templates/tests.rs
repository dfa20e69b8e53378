//! Unit tests of the model, parsing and validation (no AWS).

use serde_json::json;

use super::parse::parse_file;
use super::*;

fn ondemand() -> serde_json::Value {
    json!({
        "templateId": "T1", "maxNumber": 5, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "subnet-1"
    })
}

#[test]
fn snake_and_camel_forms_read_the_same() {
    let camel = check_template(json!({
        "templateId": "T1", "maxNumber": 5, "imageId": "ami-1", "vmType": "c5.large",
        "subnetId": "subnet-1, subnet-2", "instanceTags": "a=1;b=2", "priceType": "spot",
        "vmTypes": {"c5.large": 1, "c5.xlarge": 2}, "percentOnDemand": 10
    }))
    .unwrap();
    let snake = check_template(json!({
        "template_id": "T1", "max_number": 5, "image_id": "ami-1", "vm_type": "c5.large",
        "subnet_ids": ["subnet-1", "subnet-2"], "instance_tags": {"a": "1", "b": 2}, "price_type": "spot",
        "vm_types": {"c5.large": 1, "c5.xlarge": 2}, "percent_on_demand": 10
    }))
    .unwrap();
    assert_eq!(camel, snake);
    assert_eq!(camel.subnet_ids(), ["subnet-1", "subnet-2"]);
    assert_eq!(camel.tags().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["a=1", "b=2"]);
    assert_eq!(camel.vm_types().get("c5.xlarge"), Some(&2));
    assert_eq!(camel.provider_api(), ProviderApi::Ec2Fleet);
    assert_eq!(camel.fleet_type(), Some(FleetType::Instant));
}

#[test]
fn spec_defaults_apply() {
    let t = check_template(ondemand()).unwrap();
    assert_eq!(t.price_type, PriceType::Ondemand);
    assert_eq!(t.provider_api(), ProviderApi::RunInstances);
    assert_eq!(t.fleet_type(), None);
    assert_eq!(t.volume_type, VolumeType::Gp2);
    assert_eq!(t.spot_fleet_request_expiry, 30);
    assert_eq!(t.percent_on_demand, 0);
    assert_eq!(t.allocation_strategy_on_demand, OnDemandAllocationStrategy::LowestPrice);
    assert_eq!(t.request_validity, "0:30");
    assert_eq!(t.vm_types().into_iter().collect::<Vec<_>>(), [("c5.large".to_owned(), 1)]);
    let mut het = ondemand();
    het["priceType"] = json!("heterogeneous");
    het["fleetRole"] = json!("arn:aws:iam::1:role/r");
    let het = check_template(het).unwrap();
    assert_eq!((het.provider_api(), het.fleet_type()), (ProviderApi::SpotFleet, Some(FleetType::Request)));
}

#[test]
fn unknown_keys_pass_through_and_output_is_canonical() {
    let mut entry = ondemand();
    entry["vendorNote"] = json!({"x": 1});
    entry["instance_tags"] = json!({"Team": "grid"});
    let mut t = check_template(entry).unwrap();
    t.source_file = "f.json".into();
    let info = serde_json::to_value(t.to_info(Some(3))).unwrap();
    assert_eq!(info["vendorNote"], json!({"x": 1}));
    assert_eq!(info["instanceTags"], "Team=grid");
    assert_eq!(info["providerApi"], "RunInstances");
    assert_eq!(info["availableNumber"], 3);
    assert_eq!(info["sourceFile"], "f.json");
    assert!(info.get("instance_tags").is_none());
}

#[test]
fn one_bad_entry_is_skipped_and_the_rest_kept() {
    let body = json!({"templates": [ondemand(), {"templateId": "Bad", "maxNumber": "many"}, {
        "templateId": "T2", "maxNumber": 1, "imageId": "ami-1", "vmType": "c5.large", "subnetId": "s"
    }, ondemand()]});
    let parsed = parse_file("x.json", body.to_string().as_bytes());
    let ids: Vec<&str> = parsed.templates.iter().map(|t| t.template_id.as_str()).collect();
    assert_eq!(ids, ["T1", "T2"]);
    assert_eq!(parsed.skipped_ids, ["Bad"]);
    let messages: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
    assert!(messages[0].starts_with("x.json: templates[1].maxNumber (template 'Bad'): invalid type"), "{messages:?}");
    assert_eq!(messages[1], "x.json: templates[3].templateId (template 'T1'): 'T1' is already defined earlier in the same file");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let json = parse_file("a.json", b"{\"templates\": [\n  {\"templateId\": \"A\",,}\n]}");
    assert!(json.templates.is_empty());
    assert!(json.problems[0].to_string().starts_with("a.json: file: line 2, column 22"), "{}", json.problems[0]);
    let yaml = parse_file("b.yaml", b"templates:\n  - templateId: A\n   maxNumber: [1\n");
    assert!(yaml.problems[0].to_string().starts_with("b.yaml: file: line 3, column"), "{}", yaml.problems[0]);
}

#[test]
fn yaml_files_load() {
    let yaml = "templates:\n  - template_id: Y1\n    max_number: 2\n    image_id: ami-1\n    vm_type: m7g.large\n    subnet_id: [subnet-1]\n    instance_tags: {Cost: 42}\n";
    let parsed = parse_file("awsinstprov_templates.yml", yaml.as_bytes());
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    assert_eq!(parsed.templates[0].tags()["Cost"], "42");
    assert_eq!(parsed.templates[0].source_file, "awsinstprov_templates.yml");
}

#[test]
fn level_files_try_json_before_yaml_and_ibm_stock_name_last() {
    assert_eq!(
        level_files("awsinst", Level::Prov),
        [
            "awsinstprov_templates.json",
            "awsinstprov_templates.yaml",
            "awsinstprov_templates.yml",
            "awsprov_templates.json",
            "awsprov_templates.yaml",
            "awsprov_templates.yml"
        ]
    );
    assert_eq!(level_files("aws", Level::Prov).len(), 3, "no duplicate names");
}

#[test]
fn the_sample_file_is_clean() {
    let sample = include_str!("../../../infra/templates/awsprov_templates.json");
    let parsed = parse_file("awsprov_templates.json", sample.as_bytes());
    assert!(parsed.problems.is_empty(), "{}", describe(&parsed.problems));
    let apis: Vec<ProviderApi> = parsed.templates.iter().map(Template::provider_api).collect();
    for api in [ProviderApi::RunInstances, ProviderApi::SpotFleet, ProviderApi::Ec2Fleet, ProviderApi::Asg] {
        assert!(apis.contains(&api), "{api} missing from the sample");
    }
    let prices: Vec<PriceType> = parsed.templates.iter().map(|t| t.price_type).collect();
    for price in [PriceType::Ondemand, PriceType::Spot, PriceType::Heterogeneous] {
        assert!(prices.contains(&price), "{price:?} missing from the sample");
    }
}
