//! Contract tests: every example document of hostfactory-spec.md §2, both input forms, and
//! the rejection of bad input with a message naming the field.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::error::Error;

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    parse_input(value.to_string().as_bytes())
}

fn invalid_field(err: Error) -> (String, String) {
    match err {
        Error::Invalid { field, problem } => (field, problem),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

// ---- §2.1 getAvailableTemplates -------------------------------------------------------------

#[test]
fn templates_answer_matches_the_spec_example() {
    let template = TemplateInfo {
        template_id: "OnDemand-Minimal-Template-VM".into(),
        max_number: 10,
        available_number: Some(10),
        requested_machines: Some(vec!["ip-10-0-1-5.ec2.internal".into()]),
        attributes: [
            ("type".to_string(), Attribute::string("X86_64")),
            ("ncpus".to_string(), Attribute::numeric(1)),
            ("ncores".to_string(), Attribute::numeric(1)),
            ("nram".to_string(), Attribute::numeric(1024)),
        ]
        .into_iter()
        .collect(),
        extra: serde_json::Map::new(),
    };
    let answer = GetAvailableTemplatesResponse {
        message: "Get available templates success.".into(),
        templates: vec![template],
        warnings: Vec::new(),
        resting: 1,
    };
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({
            "message": "Get available templates success.",
            "templates": [{
                "templateId": "OnDemand-Minimal-Template-VM",
                "maxNumber": 10,
                "availableNumber": 10,
                "requestedMachines": ["ip-10-0-1-5.ec2.internal"],
                "attributes": {
                    "type": ["String", "X86_64"],
                    "ncpus": ["Numeric", "1"],
                    "ncores": ["Numeric", "1"],
                    "nram": ["Numeric", "1024"]
                }
            }]
        })
    );
}

#[test]
fn optional_template_fields_are_left_out_and_extras_kept() {
    let template = TemplateInfo {
        template_id: "t".into(),
        max_number: -1,
        available_number: None,
        requested_machines: None,
        attributes: Attributes::new(),
        extra: json!({"priceType": "spot"}).as_object().unwrap().clone(),
    };
    assert_eq!(
        serde_json::to_value(&template).unwrap(),
        json!({"templateId": "t", "maxNumber": -1, "attributes": {}, "priceType": "spot"})
    );
}

#[test]
fn attributes_read_tuples_and_plain_values_and_always_write_tuples() {
    let attributes: Attributes = serde_json::from_value(json!({
        "type": ["String", "X86_64"],
        "ncpus": ["Numeric", "4"],
        "ncores": ["Numeric", 2],
        "nram": 8192,
        "rank": "0",
        "gpu": true,
        "ratio": 1.5,
        "flag": ["Boolean", "1"]
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&attributes).unwrap(),
        json!({
            "type": ["String", "X86_64"],
            "ncpus": ["Numeric", "4"],
            "ncores": ["Numeric", "2"],
            "nram": ["Numeric", "8192"],
            "rank": ["String", "0"],
            "gpu": ["Boolean", "1"],
            "ratio": ["Numeric", "1.5"],
            "flag": ["Boolean", "1"]
        })
    );
}

#[test]
fn malformed_attributes_are_rejected() {
    for bad in [json!(["Numeric"]), json!(["Numeric", "1", "2"]), json!(["Float", "1"]), json!([["Numeric", "1"], "x"]), json!(null), json!({"a": 1})] {
        assert!(serde_json::from_value::<Attribute>(bad.clone()).is_err(), "{bad} must be rejected");
    }
}

// ---- §2.2 requestMachines ---------------------------------------------------------------------

#[test]
fn request_machines_input_from_the_spec_ignores_unknown_keys() {
    let input: RequestMachinesInput = parse(json!({
        "template": { "templateId": "Spot-Template-VM", "machineCount": 10 },
        "rc_account": "default",
        "userData": {}
    }))
    .unwrap();
    input.validate().unwrap();
    assert_eq!(input.template, RequestedTemplate { template_id: "Spot-Template-VM".into(), machine_count: 10 });
}

#[test]
fn request_machines_output_matches_the_spec_example() {
    let answer = RequestAccepted { message: "Request VM success from AWS.".into(), request_id: "r-010d8f03b13097efd".into() };
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({ "message": "Request VM success from AWS.", "requestId": "r-010d8f03b13097efd" })
    );
}

#[test]
fn request_machines_bad_input_names_the_field() {
    let cases = [
        (json!({}), "template", "is required"),
        (json!({"template": {"machineCount": 1}}), "template.templateId", "is required"),
        (json!({"template": {"templateId": "t"}}), "template.machineCount", "is required"),
        (json!({"template": {"templateId": "t", "machineCount": "ten"}}), "template.machineCount", "invalid type"),
        (json!({"template": {"templateId": "t", "machineCount": 1.5}}), "template.machineCount", "invalid type"),
        (json!({"template": {"templateId": 7, "machineCount": 1}}), "template.templateId", "invalid type"),
        (json!({"template": "x"}), "template", "invalid type"),
        (json!({"template": []}), "template", "expected struct"),
    ];
    for (body, field, problem) in cases {
        let (got_field, got_problem) = invalid_field(parse::<RequestMachinesInput>(body.clone()).unwrap_err());
        assert_eq!(got_field, field, "{body}");
        assert!(got_problem.contains(problem), "{body}: {got_problem}");
    }
}

#[test]
fn request_machines_rejects_counts_below_one_and_blank_ids() {
    for (body, field) in [
        (json!({"template": {"templateId": "t", "machineCount": 0}}), "template.machineCount"),
        (json!({"template": {"templateId": "t", "machineCount": -3}}), "template.machineCount"),
        (json!({"template": {"templateId": " ", "machineCount": 1}}), "template.templateId"),
    ] {
        let input: RequestMachinesInput = parse(body.clone()).unwrap();
        assert_eq!(invalid_field(input.validate().unwrap_err()).0, field, "{body}");
    }
}

#[test]
fn malformed_json_and_trailing_garbage_are_rejected() {
    for body in [&b"{\"template\": "[..], b"not json", br#"{"template":{"templateId":"t","machineCount":1}} {}"#, br#"{"a":1,}"#] {
        let (field, problem) = invalid_field(parse_input::<RequestMachinesInput>(body).unwrap_err());
        assert_eq!(field, "body", "{}", String::from_utf8_lossy(body));
        assert!(problem.contains("not valid JSON"), "{problem}");
    }
}

#[test]
fn a_body_that_is_json_but_no_object_is_rejected() {
    for body in [&b"[]"[..], b" [{\"machines\": []}]", b"\"machines\"", b"3", b"null"] {
        let (field, problem) = invalid_field(parse_input::<ReturnRequestsInput>(body).unwrap_err());
        assert_eq!((field.as_str(), problem.as_str()), ("body", "must be a JSON object"), "{}", body.escape_ascii());
    }
}

#[test]
fn an_empty_body_reads_as_an_empty_document() {
    let input: ReturnRequestsInput = parse_input(b"").unwrap();
    assert!(input.machines.is_empty());
    let input: ReturnRequestsInput = parse_input(b" \n").unwrap();
    assert!(input.machines.is_empty());
}

// ---- §2.3 requestReturnMachines ---------------------------------------------------------------

#[test]
fn return_machines_input_as_array_and_as_single_object() {
    let many: ReturnMachinesInput = parse(json!({
        "machines": [ { "name": "ip-10-0-57-7.ec2.internal", "machineId": "i-0e90ecb3228822f6f" } ]
    }))
    .unwrap();
    let one: ReturnMachinesInput = parse(json!({
        "machines": { "name": "ip-10-0-57-7.ec2.internal", "machineId": "i-0e90ecb3228822f6f" }
    }))
    .unwrap();
    assert_eq!(many, one);
    assert_eq!(many.machines[0].machine_id.as_deref(), Some("i-0e90ecb3228822f6f"));
    many.validate().unwrap();
}

#[test]
fn return_machines_by_name_only() {
    let input: ReturnMachinesInput = parse(json!({"machines": [{"name": "ip-10-0-57-7.ec2.internal"}]})).unwrap();
    input.validate().unwrap();
    assert_eq!(input.machines[0].machine_id, None);
}

#[test]
fn return_machines_needs_a_name_or_an_id() {
    let input: ReturnMachinesInput =
        parse(json!({"machines": [{"name": "a"}, {"name": "", "machineId": " "}]})).unwrap();
    let (field, problem) = invalid_field(input.validate().unwrap_err());
    assert_eq!(field, "machines[1]");
    assert!(problem.contains("name or a machineId"));
    let (field, _) = invalid_field(parse::<ReturnMachinesInput>(json!({})).unwrap_err());
    assert_eq!(field, "machines");
    let (field, problem) = invalid_field(parse::<ReturnMachinesInput>(json!({"machines": "x"})).unwrap_err());
    assert_eq!(field, "machines");
    assert!(problem.contains("an array of objects or a single object"), "{problem}");
}

#[test]
fn return_machines_output_matches_the_spec_example() {
    let answer = RequestAccepted {
        message: "Delete VM success.".into(),
        request_id: "ret-ce0680f0-01aa-4220-b10f-b658bb7b219e".into(),
    };
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({ "message": "Delete VM success.", "requestId": "ret-ce0680f0-01aa-4220-b10f-b658bb7b219e" })
    );
}

// ---- §2.4 getRequestStatus --------------------------------------------------------------------

#[test]
fn request_status_input_mixes_ids_as_array_or_single_object() {
    let many: RequestStatusInput = parse(json!({
        "requests": [ { "requestId": "r-010d8f03b13097efd" }, { "requestId": "ret-84ffbee9" } ]
    }))
    .unwrap();
    many.validate().unwrap();
    assert_eq!(many.requests.len(), 2);
    assert_eq!(many.requests[1].request_id, "ret-84ffbee9");
    let one: RequestStatusInput = parse(json!({ "requests": { "requestId": "r-010d8f03b13097efd" } })).unwrap();
    assert_eq!(one.requests, many.requests[..1]);
}

#[test]
fn request_status_bad_input_names_the_element() {
    let (field, problem) =
        invalid_field(parse::<RequestStatusInput>(json!({"requests": [{"requestId": "a"}, {"requestId": 5}]})).unwrap_err());
    assert_eq!(field, "requests[1].requestId");
    assert!(problem.contains("invalid type"), "{problem}");
    let (field, _) = invalid_field(parse::<RequestStatusInput>(json!({"requests": [{}]})).unwrap_err());
    assert_eq!(field, "requests[0].requestId");
    let empty: RequestStatusInput = parse(json!({"requests": []})).unwrap();
    assert_eq!(invalid_field(empty.validate().unwrap_err()).0, "requests");
}

#[test]
fn request_status_output_matches_the_spec_example() {
    let answer = RequestStatusResponse {
        requests: vec![RequestReport {
            request_id: "r-010d8f03b13097efd".into(),
            status: RequestState::Running,
            message: "".into(),
            machines: vec![MachineStatus {
                machine_id: "i-0721bb06651cad7f1".into(),
                name: "ip-10-0-57-22.ec2.internal".into(),
                result: MachineResult::Succeed,
                status: "running".into(),
                private_ip_address: "10.0.57.22".into(),
                public_ip_address: "".into(),
                launchtime: 1734619942,
                message: "".into(),
            }],
        }],
    };
    let expected = json!({
        "requests": [{
            "requestId": "r-010d8f03b13097efd",
            "status": "running",
            "message": "",
            "machines": [{
                "machineId": "i-0721bb06651cad7f1",
                "name": "ip-10-0-57-22.ec2.internal",
                "result": "succeed",
                "status": "running",
                "privateIpAddress": "10.0.57.22",
                "publicIpAddress": "",
                "launchtime": 1734619942,
                "message": ""
            }]
        }]
    });
    assert_eq!(serde_json::to_value(&answer).unwrap(), expected);
    let text = serde_json::to_string(&answer).unwrap();
    assert!(text.contains("\"launchtime\":1734619942") && !text.contains("launchTime"), "{text}");
}

#[test]
fn status_and_result_words_are_the_spec_ones() {
    let words = |v: Value| v.as_str().unwrap().to_owned();
    assert_eq!(words(json!(RequestState::CompleteWithError)), "complete_with_error");
    assert_eq!(words(json!(RequestState::Complete)), "complete");
    assert_eq!(words(json!(MachineResult::Executing)), "executing");
    assert_eq!(words(json!(MachineResult::Fail)), "fail");
}

// ---- §2.5 getReturnRequests -------------------------------------------------------------------

#[test]
fn return_requests_input_empty_or_with_hosts() {
    let empty: ReturnRequestsInput = parse(json!({})).unwrap();
    assert!(empty.machines.is_empty());
    let hosts: ReturnRequestsInput = parse(json!({
        "machines": [ { "name": "ip-10-0-58-4.ec2.internal", "machineId": "i-022161abf93cc2af9" } ]
    }))
    .unwrap();
    hosts.validate().unwrap();
    assert_eq!(hosts.machines[0].name.as_deref(), Some("ip-10-0-58-4.ec2.internal"));
    let one: ReturnRequestsInput =
        parse(json!({"machines": {"name": "ip-10-0-58-4.ec2.internal", "machineId": "i-022161abf93cc2af9"}})).unwrap();
    assert_eq!(one, hosts);
}

#[test]
fn return_requests_output_matches_the_spec_example() {
    let answer = ReturnRequestsResponse {
        status: "complete".into(),
        message: "Instances marked for termination retrieved successfully.".into(),
        requests: vec![ReturnRequest { machine: "ip-10-0-57-7.ec2.internal".into(), grace_period: 0 }],
    };
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({
            "status": "complete",
            "message": "Instances marked for termination retrieved successfully.",
            "requests": [ { "machine": "ip-10-0-57-7.ec2.internal", "gracePeriod": 0 } ]
        })
    );
}
