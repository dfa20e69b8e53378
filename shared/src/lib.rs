//! hostfactory-aws library: everything that is not an entry point.

pub mod api;
pub mod app;
pub mod aws;
pub mod caller_text;
pub mod calls;
pub mod cloud;
pub mod config;
pub mod domain_events;
pub mod error;
pub mod hostfactory;
pub mod metrics;
pub mod reconcile;
pub mod store;
pub mod telemetry;
pub mod templates;

pub use error::{Error, Result};
