//! `template.yaml` against the code and the IAM rules of README ("Deploy"): every route of the
//! code is an API Gateway route of the function serving it, and the policies keep their
//! conditions (moto does not enforce IAM, so nothing else would notice a loosened policy).

use serde_yaml_ng::Value;
use shared::api::Group;
use shared::api::routes::ROUTES;

const TEMPLATE: &str = include_str!("../../template.yaml");

fn template() -> Value {
    serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml parses")
}

/// `!Ref X`, `!Sub "..."`, `!If [...]` parse as tagged values.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn strings(value: &Value) -> Vec<String> {
    match untag(value) {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn function_resource(group: Group) -> &'static str {
    match group {
        Group::Templates => "TemplatesFunction",
        Group::Requests => "RequestsFunction",
        Group::Machines => "MachinesFunction",
    }
}

/// (method, path) of the HttpApi events of a function.
fn api_events(template: &Value, function: &str) -> Vec<(String, String)> {
    let events = template["Resources"][function]["Properties"]["Events"].as_mapping().expect("Events");
    events
        .values()
        .filter(|event| event["Type"] == "HttpApi")
        .map(|event| {
            let properties = &event["Properties"];
            (properties["Method"].as_str().unwrap().to_uppercase(), properties["Path"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn every_route_reaches_its_function_through_api_gateway() {
    let template = template();
    for route in ROUTES {
        let groups = route.group.map_or(Group::ALL.to_vec(), |group| vec![group]);
        let served = groups.iter().any(|group| {
            api_events(&template, function_resource(*group))
                .iter()
                .any(|(method, path)| path == route.path && (method == "ANY" || *method == route.method.as_str()))
        });
        assert!(served, "{} {} has no HttpApi event on {groups:?}", route.method, route.path);
    }
    assert_eq!(template["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"], "AWS_IAM");
}

/// Every IAM statement of the template: managed policies and the functions' inline ones, with
/// the resource it belongs to (`!If [cond, statement, !Ref AWS::NoValue]` gives its statement).
fn statements(template: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let name = name.as_str().unwrap().to_owned();
        let documents: Vec<&Value> = match resource["Type"].as_str().unwrap() {
            "AWS::IAM::ManagedPolicy" | "AWS::IAM::Policy" => vec![&resource["Properties"]["PolicyDocument"]],
            "AWS::Serverless::Function" => resource["Properties"]["Policies"]
                .as_sequence()
                .map(|policies| policies.iter().filter(|p| p.get("Statement").is_some()).collect())
                .unwrap_or_default(),
            _ => continue,
        };
        for document in documents {
            for statement in document["Statement"].as_sequence().unwrap() {
                let statement = match untag(statement) {
                    Value::Sequence(branches) => branches[1].clone(),
                    plain => plain.clone(),
                };
                found.push((name.clone(), statement));
            }
        }
    }
    found
}

fn condition<'a>(statement: &'a Value, operator: &str, key: &str) -> Option<&'a Value> {
    statement.get("Condition")?.get(operator)?.get(key)
}

#[test]
fn policies_act_only_on_managed_resources_and_configured_roles() {
    let template = template();
    let statements = statements(&template);
    assert!(statements.len() > 10, "{statements:?}");
    let managed_only = [
        "ec2:TerminateInstances",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyFleet",
        "ec2:DeleteFleets",
        "ec2:ModifySpotFleetRequest",
        "ec2:CancelSpotFleetRequests",
        "ec2:DeleteLaunchTemplate",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DetachInstances",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (owner, statement) in &statements {
        let actions = strings(&statement["Action"]);
        assert!(!actions.iter().any(|a| a == "*" || a.ends_with(":*")), "{owner}: wildcard action {actions:?}");
        for action in &actions {
            seen.insert(action.clone());
            if managed_only.contains(&action.as_str()) {
                let service = action.split(':').next().unwrap();
                let tag = condition(statement, "StringEquals", &format!("{service}:ResourceTag/hostfactory:managed"));
                assert_eq!(tag.and_then(Value::as_str), Some("true"), "{owner}: {action} without the managed tag");
            }
            if action == "ec2:CreateTags" {
                assert!(
                    condition(statement, "StringEquals", "ec2:CreateAction").is_some(),
                    "{owner}: tags only on create"
                );
            }
            if action == "iam:PassRole" {
                assert_eq!(strings(&statement["Resource"]), ["PassRoleArns"], "{owner}: PassRole beyond the roles");
            }
            if action == "autoscaling:CreateAutoScalingGroup" || action == "ec2:RequestSpotFleet" {
                let tag = condition(statement, "StringEquals", "aws:RequestTag/hostfactory:managed");
                assert_eq!(tag.and_then(Value::as_str), Some("true"), "{owner}: {action} untagged");
            }
            if action == "s3:PutObject" || action == "s3:DeleteObject" {
                assert_eq!(owner, "TemplatesFunction", "only the templates function writes template files");
            }
        }
    }
    for action in managed_only {
        assert!(seen.contains(action), "{action} is granted somewhere");
    }
}

/// The operator actions (`POST /api/v1/machines/{id}/{action}`: start, stop, pause, resume,
/// restart) need exactly StartInstances, StopInstances and RebootInstances: granted to the
/// machines function alone, on instances only, only when tagged managed.
#[test]
fn operator_actions_are_granted_to_the_machines_function_alone_on_managed_instances() {
    let template = template();
    let operator = ["ec2:StartInstances", "ec2:StopInstances", "ec2:RebootInstances"];
    let routes: Vec<&str> = shared::api::routes::ROUTES.iter().map(|r| r.operation).collect();
    assert!(routes.contains(&"machineAction"), "the route the actions serve");
    let mut granted = Vec::new();
    for (owner, statement) in statements(&template) {
        let actions = strings(&statement["Action"]);
        if !actions.iter().any(|a| operator.contains(&a.as_str())) {
            continue;
        }
        assert_eq!(actions, operator, "{owner}: exactly the operator actions, in a statement of their own");
        let resources = strings(&statement["Resource"]);
        assert!(resources.len() == 1 && resources[0].ends_with(":instance/*"), "{owner}: instances only, {resources:?}");
        let tag = condition(&statement, "StringEquals", "ec2:ResourceTag/hostfactory:managed");
        assert_eq!(tag.and_then(Value::as_str), Some("true"), "{owner}: only managed instances");
        granted.push(owner);
    }
    assert_eq!(granted, ["OperatePolicy"]);
    let users: Vec<&str> = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Properties"]["Policies"].as_sequence().is_some_and(|p| p.iter().any(|p| strings(p) == ["OperatePolicy"])))
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    assert_eq!(users, ["MachinesFunction"], "the machines function alone acts for operators");
}

/// `sam build --parameter-overrides Architecture=x86_64` (README "Deploy") builds and deploys
/// every function for the chosen instruction set: no function may fix its own.
#[test]
fn every_function_takes_the_architecture_parameter() {
    let template = template();
    let parameter = &template["Parameters"]["Architecture"];
    assert_eq!(parameter["Default"], "arm64");
    assert_eq!(strings(&parameter["AllowedValues"]), ["arm64", "x86_64"]);
    let architectures = template["Globals"]["Function"]["Architectures"].as_sequence().expect("Globals Architectures");
    assert!(matches!(&architectures[..], [Value::Tagged(r)] if r.tag == "!Ref" && r.value == "Architecture"));
    let resources = template["Resources"].as_mapping().expect("Resources");
    let functions: Vec<_> = resources.values().filter(|r| r["Type"] == "AWS::Serverless::Function").collect();
    assert_eq!(functions.len(), 4, "the four functions");
    assert!(functions.iter().all(|f| f["Properties"].get("Architectures").is_none()), "a function overrides Architectures");
}

/// Every function reads templates through one ListObjectsV2 of the prefix per revalidation
/// (README "Templates", Cache): ReadPolicy, which all of them carry, grants s3:ListBucket on the
/// templates bucket for keys under the templates prefix only.
#[test]
fn every_function_may_list_the_templates_prefix_and_only_it() {
    let template = template();
    let statements = statements(&template);
    let listing: Vec<&(String, Value)> =
        statements.iter().filter(|(_, s)| strings(&s["Action"]).iter().any(|a| a == "s3:ListBucket")).collect();
    assert_eq!(listing.len(), 1, "{listing:?}");
    let (owner, statement) = listing[0];
    assert_eq!(owner, "ReadPolicy");
    assert_eq!(strings(&statement["Resource"]), ["arn:${AWS::Partition}:s3:::${Bucket}"]);
    let prefix = condition(statement, "StringLike", "s3:prefix").map(strings);
    assert_eq!(prefix, Some(vec!["${TemplatesPrefix}*".to_owned()]), "listing limited to the templates prefix");
    for function in ["TemplatesFunction", "RequestsFunction", "MachinesFunction", "ReconcilerFunction"] {
        let policies = strings(&template["Resources"][function]["Properties"]["Policies"]);
        assert!(policies.iter().any(|p| p == "ReadPolicy"), "{function}: {policies:?}");
    }
}

/// The resting-templates alarm watches the metric getAvailableTemplates' EMF line carries
/// (`TemplatesResting`, dimension `Operation`; see `shared::metrics` and placement.rs).
#[test]
fn resting_templates_are_alarmed_on_the_metric_the_service_emits() {
    let template = template();
    let alarm = &template["Resources"]["TemplatesRestingAlarm"];
    assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
    let properties = &alarm["Properties"];
    assert_eq!(properties["MetricName"], "TemplatesResting");
    let dimension = &properties["Dimensions"][0];
    assert_eq!((&dimension["Name"], &dimension["Value"]), (&Value::from("Operation"), &Value::from("getAvailableTemplates")));
    assert_eq!(properties["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(properties["Threshold"], 0);
}

/// Domain events (README "Domain events"): the tables' streams feed the reconciler, which may
/// put events on the stack's bus (or the one named) and nowhere else; failures are alarmed on
/// the metric the publisher emits and dead-lettered.
#[test]
fn domain_events_flow_from_the_table_streams_to_one_bus() {
    let template = template();
    let resources = &template["Resources"];
    for table in ["RequestsTable", "MachinesTable", "TemplatesTable"] {
        assert_eq!(resources[table]["Properties"]["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES", "{table}");
    }
    let events = resources["ReconcilerFunction"]["Properties"]["Events"].as_mapping().unwrap();
    let streams: Vec<String> = events
        .values()
        .filter(|e| e["Type"] == "DynamoDB")
        .map(|e| {
            let p = &e["Properties"];
            assert_eq!(strings(&p["FunctionResponseTypes"]), ["ReportBatchItemFailures"]);
            assert_eq!(strings(&p["DestinationConfig"]["OnFailure"]["Destination"]), ["ReconcilerDeadLetters.Arn"]);
            strings(&p["Stream"]).join("")
        })
        .collect();
    assert_eq!(streams, ["RequestsTable.StreamArn", "MachinesTable.StreamArn", "TemplatesTable.StreamArn"]);
    let puts: Vec<(String, Value)> = statements(&template).into_iter().filter(|(_, s)| strings(&s["Action"]).contains(&"events:PutEvents".to_owned())).collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].0, "ReconcilerFunction", "only the publisher puts events");
    let resource = serde_yaml_ng::to_string(&puts[0].1["Resource"]).unwrap();
    assert!(resource.contains("EventBus.Arn") && resource.contains("event-bus/${EventBusName}"), "that bus only: {resource}");
    let target = serde_yaml_ng::to_string(&template["Globals"]["Function"]["Environment"]["Variables"]["HOSTFACTORY_EVENTS"]).unwrap();
    assert!(target.contains("eventbridge:${Bus}") && target.contains("EventBusName"), "every function knows the bus: {target}");
    let alarm = &resources["EventsFailedAlarm"]["Properties"];
    assert_eq!((alarm["MetricName"].as_str(), alarm["Dimensions"][0]["Value"].as_str()), (Some("EventsFailed"), Some("events")));
}
