//! The application state every entry point builds once per process: configuration, the
//! template catalog, the store, the cloud and the metrics. No HTTP here: the API, the use cases
//! and the reconciler all take it.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::cloud::{Cloud, SdkCloud};
use crate::config::{Config, Runtime};
use crate::domain_events::Publisher;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::templates::{Catalog, TemplateSource};

/// Everything a use case needs, built once per process.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    /// EC2 and Auto Scaling: [`SdkCloud`] in production.
    pub cloud: Arc<dyn Cloud>,
    pub store: Store,
    pub metrics: Metrics,
    /// Where domain events go ([`crate::domain_events::drain`] publishes them).
    pub events: Arc<Publisher>,
}

impl AppState {
    /// Every AWS client is built from `sdk` wrapped by [`crate::aws::counting`], so the metrics
    /// count each call a HostFactory call makes.
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let sdk = &crate::aws::counting(sdk);
        let cloud = Arc::new(SdkCloud::new(sdk));
        let source = TemplateSource::new(&config.templates, sdk);
        let catalog = Catalog::new(source, cloud.clone(), config.templates_cache_ttl, &config.default_provider);
        let store = Store::new(&config, sdk);
        let metrics = Metrics::from_config(&config);
        let events = Arc::new(Publisher::new(&config, sdk));
        AppState { config: Arc::new(config), catalog: Arc::new(catalog), cloud, store, metrics, events }
    }

    /// Publishes the domain events of the store's captured changes (SQLite's change feed; on
    /// DynamoDB the streams deliver them to [`crate::domain_events::stream`]).
    pub async fn publish_events(&self) -> Result<crate::domain_events::Drained> {
        crate::domain_events::drain(&self.store, &self.events, &self.metrics).await
    }

    /// Configuration and AWS clients from the environment.
    pub async fn from_env(runtime: Runtime) -> Result<Self> {
        let config = Config::from_env(runtime)?;
        let sdk = crate::aws::load_sdk_config(runtime).await;
        Ok(AppState::new(config, &sdk))
    }
}
