//! Lambda function of the reconciler: builds state once, then hands every event (the
//! EventBridge schedule, EC2 Spot interruption warnings and state changes) to
//! [`shared::reconcile::events::dispatch`].

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::app::AppState;
use shared::config::Runtime;
use shared::reconcile::events::dispatch;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(Runtime::Lambda);
    let state = AppState::from_env(Runtime::Lambda).await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let span = tracing::info_span!("reconciler", request_id = %event.context.request_id);
        // Boxed: a whole pass is a deep future, too deep for the compiler's layout queries inline.
        async move { Ok::<_, lambda_runtime::Error>(Box::pin(dispatch(state, event.payload)).await?) }.instrument(span)
    }))
    .await
}
