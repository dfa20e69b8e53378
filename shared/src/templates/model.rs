//! The typed template: every key of hostfactory-spec.md §3.1 and §3.2, read in camelCase or
//! snake_case, with the spec's defaults. Provisioning consumes this struct; unknown keys are kept
//! in `extra` and passed through to getAvailableTemplates (HostFactory ignores them).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::fields::{string_list, tags, tags_as_text};
use super::kinds::{
    AllocationStrategy, FleetType, OnDemandAllocationStrategy, PriceType, ProviderApi, Tenancy, TypeWeights, VolumeType,
};
use crate::hostfactory::{Attributes, TemplateInfo};

/// One template as written in a template file.
///
/// Keys are camelCase (IBM's form) with snake_case aliases; optional keys without a spec default
/// are `Option`s, keys with one carry it. `providerApi` and `fleetType` depend on `priceType`, so
/// read them through [`Template::provider_api`] and [`Template::fleet_type`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    #[serde(alias = "template_id")]
    pub template_id: String,
    /// Most instances (units for fleets); −1 = unlimited (capped at [`MAX_NUMBER_CAP`]).
    #[serde(alias = "max_number")]
    pub max_number: i64,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default, alias = "price_type")]
    pub price_type: PriceType,
    #[serde(default, alias = "provider_api", skip_serializing_if = "Option::is_none")]
    pub provider_api: Option<ProviderApi>,
    #[serde(default, alias = "fleet_type", skip_serializing_if = "Option::is_none")]
    pub fleet_type: Option<FleetType>,
    #[serde(default, alias = "image_id", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `subnetId`: a string, an array or a comma-separated list.
    #[serde(
        default,
        alias = "subnet_id",
        alias = "subnetIds",
        alias = "subnet_ids",
        deserialize_with = "string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subnet_id: Vec<String>,
    #[serde(default, alias = "vm_type", skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
    #[serde(default, alias = "vm_types", skip_serializing_if = "IndexMap::is_empty")]
    pub vm_types: TypeWeights,
    #[serde(default, alias = "vm_types_on_demand", skip_serializing_if = "IndexMap::is_empty")]
    pub vm_types_on_demand: TypeWeights,
    #[serde(default, alias = "vm_types_priority", skip_serializing_if = "IndexMap::is_empty")]
    pub vm_types_priority: TypeWeights,
    #[serde(default, alias = "key_name", skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(
        default,
        alias = "security_group_ids",
        deserialize_with = "string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub security_group_ids: Vec<String>,
    /// `instanceTags`: `"k=v;k2=v2"` or an object; written back in IBM's string form.
    #[serde(
        default,
        alias = "instance_tags",
        deserialize_with = "tags",
        serialize_with = "tags_as_text",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub instance_tags: IndexMap<String, String>,
    #[serde(default, alias = "instance_profile", skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    #[serde(default, alias = "user_data_script", skip_serializing_if = "Option::is_none")]
    pub user_data_script: Option<String>,
    /// GiB; `None` keeps the AMI's size.
    #[serde(default, alias = "root_device_volume_size", skip_serializing_if = "Option::is_none")]
    pub root_device_volume_size: Option<i64>,
    #[serde(default, alias = "volume_type")]
    pub volume_type: VolumeType,
    /// Launch hibernation-capable (EC2 `HibernationOptions.Configured`), so an operator may
    /// `pause` its machines (the root volume must be encrypted and large enough for RAM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hibernate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    #[serde(default, alias = "fleet_role", skip_serializing_if = "Option::is_none")]
    pub fleet_role: Option<String>,
    /// `None`: the On-Demand price.
    #[serde(default, alias = "max_spot_price", skip_serializing_if = "Option::is_none")]
    pub max_spot_price: Option<f64>,
    /// Minutes before an unfilled Spot Fleet request is cancelled.
    #[serde(default = "default_spot_fleet_request_expiry", alias = "spot_fleet_request_expiry")]
    pub spot_fleet_request_expiry: i64,
    #[serde(default, alias = "allocation_strategy", skip_serializing_if = "Option::is_none")]
    pub allocation_strategy: Option<AllocationStrategy>,
    #[serde(default, alias = "allocation_strategy_on_demand")]
    pub allocation_strategy_on_demand: OnDemandAllocationStrategy,
    #[serde(default, alias = "percent_on_demand")]
    pub percent_on_demand: i64,
    #[serde(default, alias = "pools_count", skip_serializing_if = "Option::is_none")]
    pub pools_count: Option<i64>,
    #[serde(default, alias = "launch_template_id", skip_serializing_if = "Option::is_none")]
    pub launch_template_id: Option<String>,
    #[serde(default, alias = "launch_template_version", skip_serializing_if = "Option::is_none")]
    pub launch_template_version: Option<String>,
    #[serde(default, alias = "pgrp_name", skip_serializing_if = "Option::is_none")]
    pub pgrp_name: Option<String>,
    #[serde(default, alias = "on_demand_capacity")]
    pub on_demand_capacity: i64,
    // §3.2: IBM's LSF resource-connector extensions.
    #[serde(default, alias = "placement_group_name", skip_serializing_if = "Option::is_none")]
    pub placement_group_name: Option<String>,
    #[serde(default, alias = "ebs_optimized")]
    pub ebs_optimized: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<Tenancy>,
    #[serde(default, alias = "interface_type", skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<String>,
    #[serde(default, alias = "efa_count", skip_serializing_if = "Option::is_none")]
    pub efa_count: Option<i64>,
    #[serde(default, alias = "ec2_fleet_config", skip_serializing_if = "Option::is_none")]
    pub ec2_fleet_config: Option<String>,
    #[serde(default, alias = "on_demand_target_capacity_ratio", skip_serializing_if = "Option::is_none")]
    pub on_demand_target_capacity_ratio: Option<f64>,
    #[serde(default, alias = "spot_price", skip_serializing_if = "Option::is_none")]
    pub spot_price: Option<f64>,
    #[serde(default, alias = "duration_in_hours", skip_serializing_if = "Option::is_none")]
    pub duration_in_hours: Option<i64>,
    /// `"H:MM"`.
    #[serde(default = "default_request_validity", alias = "request_validity")]
    pub request_validity: String,
    #[serde(default, alias = "user_data", skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Keys this service does not interpret, passed through unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The file this template was read from.
    #[serde(skip)]
    pub source_file: String,
}

/// What `maxNumber: -1` (unlimited) means, by the spec.
pub const MAX_NUMBER_CAP: i64 = 10_000;

fn default_spot_fleet_request_expiry() -> i64 {
    30
}

fn default_request_validity() -> String {
    "0:30".to_owned()
}

impl Template {
    /// The EC2 API used when the file names none:
    /// - `ondemand` → `RunInstances` (one call, instance ids at once);
    /// - `spot` → `EC2Fleet` (type `instant`): AWS's recommended Spot API; it answers with the
    ///   instance ids synchronously and needs no `fleetRole` (Spot Fleet is legacy at AWS);
    /// - `heterogeneous` → `SpotFleet`, IBM's semantics: a Spot Fleet request that expires after
    ///   `spotFleetRequestExpiry`, followed by On-Demand instances for what it did not fill.
    pub fn provider_api(&self) -> ProviderApi {
        self.provider_api.unwrap_or(match self.price_type {
            PriceType::Ondemand => ProviderApi::RunInstances,
            PriceType::Spot => ProviderApi::Ec2Fleet,
            PriceType::Heterogeneous => ProviderApi::SpotFleet,
        })
    }

    /// The fleet type for fleet APIs: as written, else `instant` for EC2 Fleet and `request`
    /// for Spot Fleet. `None` for RunInstances and ASG.
    pub fn fleet_type(&self) -> Option<FleetType> {
        match self.provider_api() {
            ProviderApi::Ec2Fleet => Some(self.fleet_type.unwrap_or(FleetType::Instant)),
            ProviderApi::SpotFleet => Some(self.fleet_type.unwrap_or(FleetType::Request)),
            ProviderApi::RunInstances | ProviderApi::Asg => None,
        }
    }

    /// Subnets in the order written (`ondemand` RunInstances uses the first).
    pub fn subnet_ids(&self) -> &[String] {
        &self.subnet_id
    }

    /// Instance types with their weights: `vmTypes`, else `vmType` with weight 1.
    pub fn vm_types(&self) -> TypeWeights {
        if !self.vm_types.is_empty() {
            return self.vm_types.clone();
        }
        self.vm_type.iter().map(|t| (t.clone(), 1)).collect()
    }

    /// Every instance type the template may launch (`vmType`, `vmTypes`, `vmTypesOnDemand`).
    pub fn instance_types(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let all = self.vm_type.iter().chain(self.vm_types.keys()).chain(self.vm_types_on_demand.keys());
        for name in all {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// Tags for the instances, in the order written.
    pub fn tags(&self) -> &IndexMap<String, String> {
        &self.instance_tags
    }

    /// `maxNumber` with −1 (unlimited) resolved to the spec's cap.
    pub fn effective_max_number(&self) -> i64 {
        if self.max_number < 0 { MAX_NUMBER_CAP } else { self.max_number }
    }

    /// getAvailableTemplates' view of this template: the canonical camelCase keys, the resolved
    /// `providerApi`/`fleetType`, pass-through extras and `sourceFile`.
    pub fn to_info(&self, available_number: Option<i64>) -> TemplateInfo {
        // A struct of strings, numbers and maps always serializes to an object.
        let mut extra = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for key in ["templateId", "maxNumber", "attributes"] {
            extra.remove(key);
        }
        extra.insert("providerApi".into(), self.provider_api().to_string().into());
        if let Some(fleet_type) = self.fleet_type() {
            extra.insert("fleetType".into(), serde_json::to_value(fleet_type).unwrap_or_default());
        }
        extra.insert("sourceFile".into(), self.source_file.clone().into());
        TemplateInfo {
            template_id: self.template_id.clone(),
            max_number: self.max_number,
            available_number,
            requested_machines: None,
            attributes: self.attributes.clone(),
            extra,
        }
    }
}
