//! Launching with RunInstances: the instances are the request's own (no fleet or group), so
//! there is nothing to find, shrink or stop later; they are described and terminated by id.
//! A request is spread over the template's pools (types × subnets, [`placement`]); a pool
//! without capacity is routed around, and only when every pool refused does the launch fail.

use aws_sdk_ec2::types::{HibernationOptionsRequest, InstanceType, ResourceType};

use super::placement::{self, Cooling, Pool, Refusal, Spread};
use super::spec::LaunchSpec;
use super::{Launched, Observed};
use crate::error::{Error, Result};
use crate::templates::Template;

/// Launches up to `count` instances of `template` over its pools.
pub(super) async fn launch(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
    cooling: &Cooling,
) -> Launched {
    let pools = placement::pools(template);
    fill(ec2, spec, Fill { pools: &pools, spread: placement::spread(template), cooling }, request_id, count).await
}

/// Where a [`fill`] may launch.
struct Fill<'a> {
    pools: &'a [Pool],
    spread: Spread,
    /// Pools skipped from the start (cooling down after a capacity error elsewhere).
    cooling: &'a Cooling,
}

/// The On-Demand part of a Spot template with RunInstances: the first `vmTypesOnDemand` (else
/// the template's types) in the template's subnets.
pub(super) async fn launch_on_demand(
    ec2: &aws_sdk_ec2::Client,
    template: &Template,
    spec: &LaunchSpec,
    request_id: &str,
    count: u32,
) -> Launched {
    let pools = match template.vm_types_on_demand.keys().next() {
        Some(instance_type) => placement::pools_of(vec![instance_type.clone()], template),
        None => placement::pools(template),
    };
    let cooling = Cooling::new();
    fill(ec2, spec, Fill { pools: &pools, spread: placement::spread(template), cooling: &cooling }, request_id, count).await
}

/// Launches up to `count` instances over `pools`. Each round asks the open pools for what is
/// left as [`placement::next_calls`] spreads it (MinCount=1, MaxCount=its share: EC2 may fill
/// less, moto fills one); a pool that answers a capacity error, or starts nothing, is closed
/// and the others carry on. Stops when filled, when every pool is closed, at an account limit
/// or any other error, or after `count` + one call per pool.
async fn fill(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec, fill: Fill<'_>, request_id: &str, count: u32) -> Launched {
    let Fill { pools, spread, cooling } = fill;
    let mut launched = Launched::default();
    let mut open = vec![true; pools.len()];
    for (i, pool) in pools.iter().enumerate() {
        if let Some(code) = cooling.get(&pool.key()) {
            launched.skipped.push((pool.clone(), code.clone()));
            open[i] = false;
        }
    }
    let mut calls_left = count as usize + pools.len();
    'rounds: while calls_left > 0 {
        let remaining = count.saturating_sub(u32::try_from(launched.instances.len()).unwrap_or(u32::MAX));
        let calls = placement::next_calls(pools, &open, remaining, spread);
        if calls.is_empty() {
            break;
        }
        for (i, machines) in calls.into_iter().take(calls_left) {
            calls_left -= 1;
            let answer = send(ec2, &spec.in_pool(&pools[i]), machines).await;
            match record(&mut launched, &pools[i], answer, request_id) {
                Next::Continue => {}
                Next::Close => open[i] = false,
                Next::Stop => break 'rounds,
            }
        }
    }
    let (started, refused) = (launched.instances.len(), launched.refused.len());
    tracing::info!(request_id, launched = started, requested = count, refused, failed = launched.error.is_some(), "RunInstances done");
    launched
}

/// What a [`fill`] does after one call.
enum Next {
    Continue,
    /// The pool is closed: it started nothing, or has no capacity.
    Close,
    /// No other pool can help (an account limit, any other error): the launch ends.
    Stop,
}

/// Records what one call in `pool` answered on `launched`.
fn record(launched: &mut Launched, pool: &Pool, answer: Result<Vec<Observed>>, request_id: &str) -> Next {
    let err = match answer {
        Ok(started) if started.is_empty() => return Next::Close,
        Ok(started) => {
            launched.instances.extend(started);
            if !launched.succeeded.contains(pool) {
                launched.succeeded.push(pool.clone());
            }
            return Next::Continue;
        }
        Err(err) => err,
    };
    match err.aws_code().and_then(placement::refusal) {
        Some(Refusal::Capacity) => {
            let code = err.aws_code().unwrap_or_default().to_owned();
            tracing::warn!(request_id, %pool, code, "no capacity in this pool; launching elsewhere");
            launched.refused.push((pool.clone(), code));
            Next::Close
        }
        Some(Refusal::Limit(quota)) => {
            launched.error = Some(Error::Unprocessable(format!("{err}; raise {quota}")));
            Next::Stop
        }
        None => {
            launched.error = Some(err);
            Next::Stop
        }
    }
}

/// One RunInstances call for up to `count` instances of `spec`.
async fn send(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec, count: u32) -> Result<Vec<Observed>> {
    let max = i32::try_from(count).unwrap_or(i32::MAX);
    let output = ec2
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .min_count(1)
        .max_count(max)
        .set_subnet_id(spec.subnet_id.clone())
        .set_security_group_ids((!spec.security_group_ids.is_empty()).then(|| spec.security_group_ids.clone()))
        .set_key_name(spec.key_name.clone())
        .set_iam_instance_profile(spec.instance_profile.clone())
        .set_block_device_mappings(spec.root_volume.clone().map(|m| vec![m]))
        .set_user_data(spec.user_data.clone())
        .set_hibernation_options(spec.hibernate.then(|| HibernationOptionsRequest::builder().configured(true).build()))
        .set_tag_specifications(Some(spec.tag_specifications(&[ResourceType::Instance, ResourceType::Volume])))
        .send()
        .await
        .map_err(|err| {
            let place = spec.subnet_id.as_deref().unwrap_or("the default subnet");
            Error::aws(format!("launching {count} instance(s) of {} in {place}", spec.instance_type), err)
        })?;
    Ok(output.instances().iter().filter_map(Observed::from_instance).collect())
}
