//! The EC2 observation layer against moto: batching of DescribeInstances, unknown ids, tags,
//! termination.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use hostfactory_tests::{sdk_config, unique};
use hostfactory_tests::wire::Wire;
use shared::cloud::{instances, tags};
use shared::calls::outcome as status;

async fn launch(ec2: &aws_sdk_ec2::Client, count: i32, request_id: &str) -> Vec<String> {
    let tagging = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key(tags::REQUEST_ID).value(request_id).build())
        .build();
    let launched = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        // moto launches MinCount instances (it ignores MaxCount), so ask for exactly `count`.
        .min_count(count)
        .max_count(count)
        .tag_specifications(tagging)
        .send()
        .await
        .expect("RunInstances on moto");
    launched.instances().iter().map(|i| i.instance_id().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn describe_needs_one_call_per_thousand_ids_and_skips_unknown_ids() {
    let sdk = sdk_config().await;
    let wire = Wire::default();
    let ec2 = aws_sdk_ec2::Client::new(&wire.sdk_config(&sdk));
    let request_id = unique("req");
    let mut ids = launch(&ec2, 1050, &request_id).await;
    assert_eq!(ids.len(), 1050);
    ids.push("i-0000000000000dead".to_owned());
    let launches = wire.log.actions("RunInstances");

    let observed = instances::describe(&ec2, &ids).await.unwrap();

    assert_eq!(wire.log.actions("DescribeInstances"), 2, "1,051 ids take two calls");
    assert_eq!(wire.log.actions("RunInstances"), launches);
    assert_eq!(observed.len(), 1050, "the unknown id is absent, not an error");
    let first = &observed[&ids[0]];
    assert_eq!(first.state, "running");
    assert!(first.private_dns_name.ends_with(".internal"), "{first:?}");
    assert!(!first.private_ip_address.is_empty() && first.launch_time > 1_600_000_000);
    assert_eq!(first.lifecycle, "ondemand");
    assert_eq!(first.tags[tags::REQUEST_ID], request_id);
    assert_eq!(status::provisioning_result(Some(first)).0, shared::hostfactory::MachineResult::Succeed);
    assert_eq!(status::return_result(observed.get("i-0000000000000dead")).0, shared::hostfactory::MachineResult::Succeed);
}

#[tokio::test]
async fn tagged_instances_are_found_and_terminated() {
    let sdk = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let request_id = unique("req");
    let ids = launch(&ec2, 3, &request_id).await;

    let mut found: Vec<String> = instances::find_tagged(&ec2, tags::REQUEST_ID, &request_id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.instance_id)
        .collect();
    found.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(found, expected);

    instances::terminate(&ec2, &ids).await.unwrap();
    let observed = instances::describe(&ec2, &ids).await.unwrap();
    for id in &ids {
        let state = observed.get(id).map(|o| o.state.as_str());
        assert!(matches!(state, Some("terminated") | Some("shutting-down") | None), "{id}: {state:?}");
        assert_ne!(status::return_result(observed.get(id)).0, shared::hostfactory::MachineResult::Fail);
    }
}

#[tokio::test]
async fn aws_failures_carry_context() {
    let sdk = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let err = instances::terminate(&ec2, &["not-an-instance-id".to_owned()]).await.unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("terminating 1 instances: "), "{message}");
    assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn injected_ec2_faults_surface_as_aws_errors_and_reach_nothing() {
    use hostfactory_tests::wire::Fault;
    let wire = Wire::default();
    let faults = &wire.faults;
    let sdk = wire.sdk_config(&sdk_config().await);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    // Throttling is retried by the SDK (standard mode: 3 attempts), so it must fail 3 times.
    faults.inject(Fault::once("DescribeInstances", "RequestLimitExceeded", "Request limit exceeded.").times(3));

    let err = instances::describe(&ec2, &["i-0123456789abcdef0".to_owned()]).await.unwrap_err();

    assert_eq!(err.to_string(), "describing 1 instances: RequestLimitExceeded: Request limit exceeded.");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE, "throttling answers 503 so HostFactory retries");
    assert_eq!(faults.remaining(), 0);
    assert_eq!(wire.log.actions("DescribeInstances"), 3, "every attempt is counted");
    let observed = instances::describe(&ec2, &["i-0123456789abcdef0".to_owned()]).await.unwrap();
    assert!(observed.is_empty(), "after the fault, calls reach moto again");
    let injected: Vec<bool> = wire.log.calls().iter().map(|c| c.injected).collect();
    assert_eq!(injected, [true, true, true, false], "three injected answers, then moto");
}
