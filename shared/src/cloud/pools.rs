//! The pure arithmetic every fleet and group launch shares: which (type, weight, subnet) pools a
//! template may launch, how many units go On-Demand, how much a type weighs, and when a fleet
//! stops trying.

use aws_smithy_types::DateTime;

use crate::templates::{PriceType, Template};

/// When a fleet stops trying: now + `spotFleetRequestExpiry` minutes.
pub fn valid_until(template: &Template) -> DateTime {
    let expiry_secs = template.spot_fleet_request_expiry.max(1).saturating_mul(60);
    DateTime::from_secs(crate::store::now().saturating_add(expiry_secs))
}

/// Every (instance type, weight, subnet) the template may launch, subnets in the order written.
pub fn weighted_pools(template: &Template) -> Vec<(String, i64, Option<String>)> {
    let subnets: Vec<Option<String>> = match template.subnet_ids() {
        [] => vec![None],
        ids => ids.iter().cloned().map(Some).collect(),
    };
    template
        .vm_types()
        .into_iter()
        .flat_map(|(instance_type, weight)| {
            subnets.clone().into_iter().map(move |subnet| (instance_type.clone(), weight, subnet))
        })
        .collect()
}

/// `count` units as (On-Demand, Spot): all On-Demand for `ondemand`, else `percentOnDemand`
/// percent On-Demand (rounded down) and the rest Spot.
pub fn split_capacity(template: &Template, count: u32) -> (u32, u32) {
    let on_demand = match template.price_type {
        PriceType::Ondemand => count,
        PriceType::Spot | PriceType::Heterogeneous => {
            let percent = u64::try_from(template.percent_on_demand.clamp(0, 100)).unwrap_or(0);
            u32::try_from(u64::from(count) * percent / 100).unwrap_or(count)
        }
    };
    (on_demand, count - on_demand)
}

/// The On-Demand share of `count` units as the percentage Auto Scaling takes (100 for none).
pub fn on_demand_percent(template: &Template, count: u32) -> i32 {
    let (on_demand, _) = split_capacity(template, count);
    if count == 0 { 100 } else { i32::try_from(u64::from(on_demand) * 100 / u64::from(count)).unwrap_or(100) }
}

/// The capacity units of `instance_type` in `template` (1 when it is not listed).
pub fn weight(template: Option<&Template>, instance_type: &str) -> u32 {
    template.and_then(|t| t.vm_types().get(instance_type).copied()).and_then(|w| u32::try_from(w).ok()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::check_template;

    fn template(extra: serde_json::Value) -> Template {
        let mut entry = json!({"templateId": "T1", "maxNumber": 5, "imageId": "ami-1", "vmType": "t3.micro",
            "subnetId": ["subnet-1", "subnet-2"]});
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check_template(entry).unwrap()
    }

    #[test]
    fn capacity_splits_on_demand_by_percent_rounding_down() {
        let cases = [
            (json!({}), 5, (5, 0), 100),
            (json!({"priceType": "spot"}), 5, (0, 5), 0),
            (json!({"priceType": "spot", "percentOnDemand": 50}), 5, (2, 3), 40),
            (json!({"priceType": "spot", "percentOnDemand": 100}), 5, (5, 0), 100),
            (json!({"priceType": "spot", "percentOnDemand": 30}), 10, (3, 7), 30),
            (json!({"priceType": "spot", "percentOnDemand": 50}), 0, (0, 0), 100),
        ];
        for (extra, count, split, percent) in cases {
            let t = template(extra.clone());
            assert_eq!(split_capacity(&t, count), split, "{extra} x {count}");
            assert_eq!(on_demand_percent(&t, count), percent, "{extra} x {count}");
        }
    }

    #[test]
    fn every_weighted_type_goes_to_every_subnet() {
        let pools = weighted_pools(&template(json!({"vmTypes": {"m5.large": 1, "m5.xlarge": 2}})));
        let expected = [
            ("m5.large", 1, "subnet-1"),
            ("m5.large", 1, "subnet-2"),
            ("m5.xlarge", 2, "subnet-1"),
            ("m5.xlarge", 2, "subnet-2"),
        ];
        let pools: Vec<(&str, i64, &str)> =
            pools.iter().map(|(t, w, s)| (t.as_str(), *w, s.as_deref().unwrap_or_default())).collect();
        assert_eq!(pools, expected);
    }

    #[test]
    fn a_type_weighs_its_vm_types_weight_else_one() {
        let weighted = template(json!({"vmTypes": {"m5.large": 1, "m5.xlarge": 4}}));
        let cases = [(Some(&weighted), "m5.xlarge", 4), (Some(&weighted), "m5.large", 1), (Some(&weighted), "c5.large", 1), (None, "m5.xlarge", 1)];
        for (template, instance_type, units) in cases {
            assert_eq!(weight(template, instance_type), units, "{instance_type}");
        }
    }

    #[test]
    fn a_fleet_stops_trying_after_its_expiry() {
        let now = crate::store::now();
        for (expiry, minutes) in [(json!(10), 10), (json!(1), 1)] {
            let until = valid_until(&template(json!({"spotFleetRequestExpiry": expiry}))).secs();
            let expected = now + minutes * 60;
            assert!((expected..=expected + 2).contains(&until), "{expiry}: {until} vs {expected}");
        }
    }
}
