//! Lambda function run by the EventBridge schedule. It starts and answers each scheduled
//! event; reconciliation work (pending timeouts, fleet expiry, orphan adoption) lands with
//! the provisioning issue and will live in `shared`.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use shared::config::{Config, Runtime};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(Runtime::Lambda);
    let config = Config::from_env(Runtime::Lambda)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let prefix = config.table_prefix.clone();
        async move {
            let source = event.payload.get("source").cloned().unwrap_or(Value::Null);
            tracing::info!(request_id = %event.context.request_id, %source, table_prefix = %prefix, "reconciler invoked; no reconciliation steps are defined yet");
            Ok::<_, lambda_runtime::Error>(json!({ "reconciled": 0 }))
        }
    }))
    .await
}
