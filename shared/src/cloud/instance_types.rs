//! `DescribeInstanceTypes` for the templates' derived attributes ([`InstanceTypes`]).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ArchitectureType, Filter, InstanceTypeInfo};

use super::SdkCloud;
use crate::error::{Error, Result};
use crate::templates::{ARM64_HOST_TYPE, InstanceSpec, InstanceTypes};

#[async_trait]
impl InstanceTypes for SdkCloud {
    /// One `DescribeInstanceTypes` page per 100 types or so (a filter, so one unknown name does
    /// not fail the others).
    async fn describe_instance_types(&self, names: &[&str]) -> Result<(HashMap<String, InstanceSpec>, u64)> {
        let filter = Filter::builder().name("instance-type").set_values(Some(names.iter().map(|n| n.to_string()).collect())).build();
        let mut pages = self.ec2.describe_instance_types().filters(filter).into_paginator().send();
        let (mut specs, mut calls) = (HashMap::new(), 0);
        while let Some(page) = pages.next().await {
            calls += 1;
            let page = page.map_err(|err| Error::aws("describing instance types for template attributes", err))?;
            specs.extend(page.instance_types.unwrap_or_default().iter().filter_map(spec_of));
        }
        Ok((specs, calls))
    }
}

fn spec_of(info: &InstanceTypeInfo) -> Option<(String, InstanceSpec)> {
    let name = info.instance_type()?.as_str().to_owned();
    let vcpu = info.v_cpu_info()?;
    let vcpus = u32::try_from(vcpu.default_v_cpus()?).ok()?;
    let threads = vcpu.default_threads_per_core().and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0).unwrap_or(1);
    let cores = vcpu.default_cores().and_then(|c| u32::try_from(c).ok()).unwrap_or(vcpus / threads).max(1);
    let memory_mib = u64::try_from(info.memory_info()?.size_in_mib()?).ok()?;
    let architectures = info.processor_info().map(|p| p.supported_architectures()).unwrap_or_default();
    let host_type = if architectures.contains(&ArchitectureType::Arm64) && !architectures.contains(&ArchitectureType::X8664) {
        ARM64_HOST_TYPE
    } else {
        "X86_64"
    };
    Some((name, InstanceSpec { vcpus, cores, memory_mib, host_type: host_type.to_owned() }))
}

