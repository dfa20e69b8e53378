//! Template validation: every rule names the template, the field and the problem.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use super::kinds::{FleetType, PriceType, ProviderApi, VolumeType};
use super::model::Template;
use crate::hostfactory::AttributeType;

/// One problem found in a template file or a posted document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The file, when the problem comes from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Position of the template in the file's `templates` array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Field path inside the template (`maxNumber`, `attributes.ncpus`), or `file` for a file
    /// that does not parse.
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem { file: None, index: None, template_id: None, field: field.into(), problem: problem.into() }
    }

    pub fn in_template(mut self, index: usize, template_id: Option<&str>) -> Self {
        self.index = Some(index);
        self.template_id = template_id.map(str::to_owned);
        self
    }

    pub fn in_file(mut self, file: &str) -> Self {
        self.file = Some(file.to_owned());
        self
    }
}

impl fmt::Display for Problem {
    /// `awsinstprov_templates.json: templates[1].maxNumber (template 'A'): must be ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        match self.index {
            Some(index) => write!(f, "templates[{index}].{}", self.field)?,
            None => f.write_str(&self.field)?,
        }
        if let Some(id) = &self.template_id {
            write!(f, " (template '{id}')")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Joins problems into one message, one per line.
pub fn describe(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// How a check reports: the field and what is wrong with it.
type Report<'a> = dyn FnMut(&str, String) + 'a;

/// The problems of one template, empty when it is usable, in field order.
pub fn validate(template: &Template) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, text: String| problems.push(Problem::field(field, text));
    for check in [identity, launch, weights, volume, limits] {
        check(template, &mut problem);
    }
    problems
}

/// `templateId`, `maxNumber` and the attributes HostFactory matches on.
fn identity(t: &Template, problem: &mut Report) {
    let id = &t.template_id;
    if id.is_empty() || id.len() > 64 {
        problem("templateId", format!("'{id}' must be 1 to 64 characters long"));
    } else if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        problem("templateId", format!("'{id}' may only hold letters, digits, '_' and '-'"));
    }
    if !(-1..=10_000).contains(&t.max_number) {
        problem("maxNumber", format!("{} must be between -1 and 10000", t.max_number));
    }

    for (name, attribute) in &t.attributes {
        match name.as_str() {
            "ncpus" | "ncores" | "nram" => {
                let positive = attribute.value.parse::<f64>().is_ok_and(|v| v > 0.0);
                if attribute.kind != AttributeType::Numeric || !positive {
                    problem(&format!("attributes.{name}"), format!("must be [\"Numeric\", \"<number > 0>\"], got {:?} {:?}", attribute.kind, attribute.value));
                }
            }
            "type" if attribute.kind != AttributeType::String || attribute.value.trim().is_empty() => {
                problem("attributes.type", "must be a non-empty [\"String\", \"...\"] such as X86_64".to_owned());
            }
            _ => {}
        }
    }
}

/// What the launch needs: image, subnets, instance types, and the API with its fleet settings.
fn launch(t: &Template, problem: &mut Report) {
    let api = t.provider_api();
    if t.image_id.as_deref().is_none_or(|s| s.trim().is_empty()) && t.launch_template_id.is_none() {
        problem("imageId", "is required unless launchTemplateId supplies the image".to_owned());
    }
    if t.subnet_id.is_empty() && t.launch_template_id.is_none() {
        problem("subnetId", "is required: a subnet id, an array or a comma-separated list".to_owned());
    }
    let has_types = t.vm_type.is_some() || !t.vm_types.is_empty();
    match t.price_type {
        PriceType::Ondemand if !has_types => problem("vmType", "priceType ondemand needs vmType or vmTypes".to_owned()),
        PriceType::Spot | PriceType::Heterogeneous if !has_types => {
            problem("vmTypes", format!("priceType {} needs vmTypes or vmType", price_name(t.price_type)))
        }
        _ => {}
    }
    if t.price_type == PriceType::Heterogeneous && matches!(api, ProviderApi::RunInstances) {
        problem("providerApi", "RunInstances cannot mix Spot and On-Demand; use SpotFleet, EC2Fleet or ASG".to_owned());
    }
    if api == ProviderApi::SpotFleet && t.fleet_role.as_deref().is_none_or(|s| s.trim().is_empty()) {
        problem("fleetRole", "is required with providerApi SpotFleet (an IAM role ARN)".to_owned());
    }
    match (api, t.fleet_type) {
        (ProviderApi::RunInstances | ProviderApi::Asg, Some(_)) => {
            problem("fleetType", format!("applies to EC2Fleet and SpotFleet only, not {api}"))
        }
        (ProviderApi::SpotFleet, Some(FleetType::Instant)) => {
            problem("fleetType", "instant is an EC2Fleet type; SpotFleet takes request or maintain".to_owned())
        }
        _ => {}
    }
}

/// Instance-type weights and priorities, and the On-Demand share.
fn weights(t: &Template, problem: &mut Report) {
    for (field, weights, min) in
        [("vmTypes", &t.vm_types, 1), ("vmTypesOnDemand", &t.vm_types_on_demand, 1), ("vmTypesPriority", &t.vm_types_priority, 0)]
    {
        for (name, weight) in weights {
            if name.trim().is_empty() {
                problem(field, "has an empty instance type".to_owned());
            } else if *weight < min {
                problem(&format!("{field}.{name}"), format!("{weight} must be at least {min}"));
            }
        }
    }
    if !(0..=100).contains(&t.percent_on_demand) {
        problem("percentOnDemand", format!("{} must be between 0 and 100", t.percent_on_demand));
    }
}

/// The root volume.
fn volume(t: &Template, problem: &mut Report) {
    if let Some(size) = t.root_device_volume_size
        && !(1..=16_384).contains(&size)
    {
        problem("rootDeviceVolumeSize", format!("{size} GiB must be between 1 and 16384"));
    }
    if let Some(iops) = t.iops {
        if !matches!(t.volume_type, VolumeType::Io1 | VolumeType::Io2) {
            problem("iops", "applies only with volumeType io1 or io2".to_owned());
        } else if !(100..=64_000).contains(&iops) {
            problem("iops", format!("{iops} must be between 100 and 64000"));
        }
    }
}

/// Expiries, counts, prices and ratios.
fn limits(t: &Template, problem: &mut Report) {
    if t.spot_fleet_request_expiry <= 0 {
        problem("spotFleetRequestExpiry", format!("{} minutes must be greater than 0", t.spot_fleet_request_expiry));
    }
    for (field, value) in [("poolsCount", t.pools_count), ("durationInHours", t.duration_in_hours), ("ttl", t.ttl)] {
        if let Some(v) = value
            && v <= 0
        {
            problem(field, format!("{v} must be greater than 0"));
        }
    }
    if let Some(count) = t.efa_count
        && count < 0
    {
        problem("efaCount", format!("{count} must not be negative"));
    }
    if t.on_demand_capacity < 0 {
        problem("onDemandCapacity", format!("{} must not be negative", t.on_demand_capacity));
    }
    for (field, value) in [("maxSpotPrice", t.max_spot_price), ("spotPrice", t.spot_price)] {
        if let Some(price) = value
            && (!price.is_finite() || price <= 0.0)
        {
            problem(field, format!("{price} must be greater than 0"));
        }
    }
    if let Some(ratio) = t.on_demand_target_capacity_ratio
        && !(0.0..=1.0).contains(&ratio)
    {
        problem("onDemandTargetCapacityRatio", format!("{ratio} must be between 0 and 1"));
    }
    if !valid_validity(&t.request_validity) {
        problem("requestValidity", format!("'{}' must be H:MM such as 0:30", t.request_validity));
    }
}

/// Duplicate `templateId`s of one file: every occurrence after the first, as (index, problem).
pub fn duplicates<'a>(ids: impl Iterator<Item = (usize, &'a str)>) -> Vec<Problem> {
    let mut seen = HashSet::new();
    ids.filter(|(_, id)| !seen.insert(*id))
        .map(|(index, id)| {
            Problem::field("templateId", format!("'{id}' is already defined earlier in the same file"))
                .in_template(index, Some(id))
        })
        .collect()
}

fn price_name(price: PriceType) -> &'static str {
    match price {
        PriceType::Ondemand => "ondemand",
        PriceType::Spot => "spot",
        PriceType::Heterogeneous => "heterogeneous",
    }
}

/// `H:MM` (hours unbounded, minutes 00-59).
fn valid_validity(value: &str) -> bool {
    let Some((hours, minutes)) = value.split_once(':') else { return false };
    !hours.is_empty()
        && hours.chars().all(|c| c.is_ascii_digit())
        && minutes.len() == 2
        && minutes.parse::<u8>().is_ok_and(|m| m < 60)
}
