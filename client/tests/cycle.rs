//! The whole HostFactory cycle exactly as Symphony drives it: the five provider scripts,
//! `-f <file>`, one JSON document on stdout, exit codes, against the local server on moto.

mod common;

use common::{hf, install_plugin, serve_locally, status_until_done};
use serde_json::{Value, json};

#[tokio::test]
async fn the_scripts_drive_a_full_hostfactory_cycle() {
    let sdk = hostfactory_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let (subnet, sg) = hostfactory_tests::new_network(&ec2).await;
    let templates = tempfile::tempdir().unwrap();
    let template = json!({"templates": [{
        "templateId": "Cycle-OnDemand", "maxNumber": 4, "imageId": "ami-12c6146b", "vmType": "t3.micro",
        "subnetId": subnet, "securityGroupIds": [sg],
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "1024"]}
    }]});
    std::fs::write(templates.path().join("awsprov_templates.json"), template.to_string()).unwrap();
    let (url, _store) = serve_locally(&sdk, templates.path()).await;
    let plugin = install_plugin();
    let plugin = plugin.path();

    let (code, listed) = hf(plugin, &url, "getAvailableTemplates", json!({})).await;
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed["templates"][0]["templateId"], "Cycle-OnDemand");
    assert_eq!(listed["templates"][0]["availableNumber"], 4);

    let (code, accepted) =
        hf(plugin, &url, "requestMachines", json!({"template": {"templateId": "Cycle-OnDemand", "machineCount": 2}}))
            .await;
    assert_eq!(code, 0, "{accepted}");
    let request_id = accepted["requestId"].as_str().unwrap().to_owned();
    assert!(request_id.starts_with("req-"));

    let done = status_until_done(plugin, &url, &request_id).await;
    assert_eq!(done["status"], "complete", "{done}");
    let machines = done["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), 2);
    for machine in &machines {
        assert_eq!(machine["result"], "succeed");
        assert!(machine["name"].as_str().unwrap().ends_with(".internal"), "{machine}");
        assert!(machine["launchtime"].is_i64(), "{machine}");
    }

    let (code, over) =
        hf(plugin, &url, "requestMachines", json!({"template": {"templateId": "Cycle-OnDemand", "machineCount": 3}}))
            .await;
    assert_eq!(code, 1, "over maxNumber fails so HostFactory retries later: {over}");
    assert!(over["message"].as_str().unwrap().contains('2'), "names what is available: {over}");

    let hosts: Vec<Value> = machines.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (code, returned) = hf(plugin, &url, "requestReturnMachines", json!({"machines": hosts})).await;
    assert_eq!(code, 0, "{returned}");
    let return_id = returned["requestId"].as_str().unwrap().to_owned();
    assert!(return_id.starts_with("ret-"));

    let gone = status_until_done(plugin, &url, &return_id).await;
    assert_eq!(gone["status"], "complete", "{gone}");
    assert!(gone["machines"].as_array().unwrap().iter().all(|m| m["result"] == "succeed"), "{gone}");

    let (code, reclaimed) = hf(plugin, &url, "getReturnRequests", json!({"machines": hosts})).await;
    assert_eq!(code, 0, "{reclaimed}");
    assert_eq!(reclaimed["status"], "complete");
    assert_eq!(reclaimed["requests"].as_array().unwrap().len(), 2, "terminated hosts are reported: {reclaimed}");

    let ids: Vec<String> = machines.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let observed = shared::cloud::instances::describe(&ec2, &ids).await.unwrap();
    assert!(
        ids.iter().all(|id| observed.get(id).is_none_or(|o| o.state == "terminated" || o.state == "shutting-down"))
    );

    let (code, listed) = hf(plugin, &url, "getAvailableTemplates", json!({})).await;
    assert_eq!(code, 0);
    assert_eq!(listed["templates"][0]["availableNumber"], 4, "capacity released after the return");
}
