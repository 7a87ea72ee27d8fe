//! Lambda entry point: reads settings, builds clients once, serves events.

use dispatcher::config::Config;
use dispatcher::dispatch::{self, Clients};
use labeler_core::store::Clock;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg = Config::from_env()?;
    let clients = dispatcher::clients(&cfg).await;
    // Borrowed for the life of `run`, which serves every invocation.
    let (cfg, clients): (&Config, &Clients) = (&cfg, &clients);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        dispatch::handle(
            &event.payload,
            &event.context.request_id,
            clients,
            cfg,
            Clock::now(),
        )
        .await
        .map_err(Error::from)
    }))
    .await
}
