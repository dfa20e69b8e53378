//! Lambda function of the machines resource group: builds state once, then serves
//! [`shared::api::function_router`] through `lambda_http`.

use shared::api::{Group, function_router};
use shared::app::AppState;
use shared::config::Runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(Runtime::Lambda);
    let state = AppState::from_env(Runtime::Lambda).await?;
    lambda_http::run(function_router(Group::Machines, state)).await
}
