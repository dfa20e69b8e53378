//! The typed state on the records: who owns a request's instances ([`Owner`]) and an
//! instance's EC2 state ([`InstanceState`]), each stored under the attributes and spellings
//! earlier versions wrote.

use serde::{Deserialize, Serialize};

use crate::templates::FleetType;

/// Who holds a request's instances in the cloud, and so how they are found, shrunk and stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// RunInstances (and requests without an owner): the instances are recorded at launch.
    Instances,
    Ec2Fleet { id: String, kind: FleetType },
    SpotFleet { id: String, kind: FleetType },
    Asg { name: String },
}

impl Owner {
    /// Its instances arrive after the launch call, for getRequestStatus to find (RunInstances and
    /// instant EC2 Fleets record theirs at launch).
    pub fn fills_later(&self) -> bool {
        !matches!(self, Owner::Instances | Owner::Ec2Fleet { kind: FleetType::Instant, .. })
    }
}

/// EC2's `State.Name` of an instance, stored and compared as EC2 spells it (`shutting-down`);
/// a name EC2 may add later is kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    Other(String),
}

impl InstanceState {
    const NAMES: [(&str, InstanceState); 6] = [
        ("pending", InstanceState::Pending),
        ("running", InstanceState::Running),
        ("stopping", InstanceState::Stopping),
        ("stopped", InstanceState::Stopped),
        ("shutting-down", InstanceState::ShuttingDown),
        ("terminated", InstanceState::Terminated),
    ];

    pub fn parse(name: &str) -> Self {
        let known = Self::NAMES.iter().find(|(known, _)| *known == name);
        known.map_or_else(|| InstanceState::Other(name.to_owned()), |(_, state)| state.clone())
    }

    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Other(name) => name,
            known => Self::NAMES.iter().find(|(_, state)| state == known).map_or("", |(name, _)| name),
        }
    }
}

impl From<&str> for InstanceState {
    fn from(name: &str) -> Self {
        InstanceState::parse(name)
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compared with EC2's spelling, as the contract tests do (`i.state == "running"`).
impl PartialEq<&str> for InstanceState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for InstanceState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstanceState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| InstanceState::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::{Value, json};

    use super::*;
    use crate::store::RequestRecord;

    /// A provisioning request as the current code writes it (SQLite body, DynamoDB item), with
    /// its owner attributes.
    fn stored(owner: Value) -> Value {
        let mut record = json!({"requestId": "req-1", "kind": "provision", "templateId": "T", "provider": "awsinst",
            "machineCount": 2, "status": "in_progress", "message": "", "createdAt": 100, "updatedAt": 100,
            "version": 3});
        record.as_object_mut().unwrap().extend(owner.as_object().unwrap().clone());
        record
    }

    fn owners() -> Vec<(Value, Owner, bool)> {
        let fleet = |kind| Owner::Ec2Fleet { id: "fleet-1".into(), kind };
        vec![
            (json!({"providerApi": "RunInstances"}), Owner::Instances, false),
            (json!({}), Owner::Instances, false),
            (json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1", "fleetType": "instant"}), fleet(FleetType::Instant), false),
            (json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1", "fleetType": "request"}), fleet(FleetType::Request), true),
            (json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1", "fleetType": "maintain"}), fleet(FleetType::Maintain), true),
            // Written before the fleet type was recorded (and ORB imports): without a template, instant.
            (json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1"}), fleet(FleetType::Instant), false),
            // Before the launch answered: no fleet id yet.
            (json!({"providerApi": "EC2Fleet", "fleetType": "request"}), Owner::Instances, false),
            (
                json!({"providerApi": "SpotFleet", "fleetId": "sfr-1", "fleetType": "maintain"}),
                Owner::SpotFleet { id: "sfr-1".into(), kind: FleetType::Maintain },
                true,
            ),
            (
                json!({"providerApi": "SpotFleet", "fleetId": "sfr-1"}),
                Owner::SpotFleet { id: "sfr-1".into(), kind: FleetType::Request },
                true,
            ),
            (json!({"providerApi": "ASG", "asgName": "hostfactory-req-1"}), Owner::Asg { name: "hostfactory-req-1".into() }, true),
        ]
    }

    #[test]
    fn records_in_todays_shape_read_with_their_owner() {
        for (attributes, owner, fills_later) in owners() {
            let body = stored(attributes.clone()).to_string();
            let from_sqlite: RequestRecord = serde_json::from_str(&body).unwrap();
            let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(stored(attributes.clone())).unwrap();
            let from_dynamo: RequestRecord = serde_dynamo::from_item(item).unwrap();
            assert_eq!(from_sqlite, from_dynamo, "{attributes}");
            assert_eq!(from_sqlite.owner(None), owner, "{attributes}");
            assert_eq!(owner.fills_later(), fills_later, "{attributes}");
            let written = serde_json::to_value(&from_sqlite).unwrap();
            assert_eq!(written, stored(attributes.clone()), "written back in the same shape");
        }
    }

    #[test]
    fn a_template_gives_the_kind_a_record_did_not_store() {
        let template = crate::templates::check_template(json!({"templateId": "T", "maxNumber": 5, "imageId": "ami-1",
            "subnetId": "subnet-1", "vmType": "t3.micro", "providerApi": "EC2Fleet", "fleetType": "maintain"}))
        .unwrap();
        let record: RequestRecord =
            serde_json::from_value(stored(json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1"}))).unwrap();
        assert_eq!(record.owner(Some(&template)), Owner::Ec2Fleet { id: "fleet-1".into(), kind: FleetType::Maintain });
        let recorded: RequestRecord = serde_json::from_value(stored(
            json!({"providerApi": "EC2Fleet", "fleetId": "fleet-1", "fleetType": "request"}),
        ))
        .unwrap();
        assert_eq!(recorded.owner(Some(&template)), Owner::Ec2Fleet { id: "fleet-1".into(), kind: FleetType::Request });
    }

    #[test]
    fn instance_states_keep_ec2s_spelling() {
        let cases = [
            ("pending", InstanceState::Pending),
            ("running", InstanceState::Running),
            ("stopping", InstanceState::Stopping),
            ("stopped", InstanceState::Stopped),
            ("shutting-down", InstanceState::ShuttingDown),
            ("terminated", InstanceState::Terminated),
            ("hibernating", InstanceState::Other("hibernating".into())),
            ("", InstanceState::Other(String::new())),
        ];
        for (name, state) in cases {
            assert_eq!(InstanceState::parse(name), state, "{name}");
            assert_eq!(state.as_str(), name);
            assert!(state == name);
            assert_eq!(serde_json::to_value(&state).unwrap(), json!(name));
            assert_eq!(serde_json::from_value::<InstanceState>(json!(name)).unwrap(), state);
        }
    }
}
