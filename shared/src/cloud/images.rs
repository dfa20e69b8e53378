//! The root device name of each image a template launches. EC2 fixes an AMI's root device name
//! when the image is registered and never changes it, so a process describes each image once
//! ([`RootDevices`]): a launch that sets `rootDeviceVolumeSize` costs no DescribeImages after the
//! first for its image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// Root device names by image id, as this process described them (shared by clones). One entry
/// per image the process launched with a root volume size: small, never evicted.
#[derive(Clone, Default)]
pub(super) struct RootDevices(Arc<Mutex<HashMap<String, String>>>);

impl RootDevices {
    /// The root device name of `image_id`: remembered, else described once.
    pub(super) async fn of(&self, ec2: &aws_sdk_ec2::Client, image_id: &str) -> Result<String> {
        if let Some(device) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(image_id) {
            return Ok(device.clone());
        }
        let device = describe(ec2, image_id).await?;
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(image_id.to_owned(), device.clone());
        Ok(device)
    }
}

async fn describe(ec2: &aws_sdk_ec2::Client, image_id: &str) -> Result<String> {
    let images = ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .map_err(|err| Error::aws(format!("describing image {image_id} for its root device"), err))?;
    images
        .images()
        .first()
        .and_then(|image| image.root_device_name())
        .map(str::to_owned)
        .ok_or_else(|| Error::Config(format!("image {image_id} has no root device name")))
}
