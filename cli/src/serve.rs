//! The local server's connections: axum's router on hyper HTTP/1 with a header read timeout and
//! a body deadline, so a slow client cannot hold a connection open. (API Gateway hands Lambda
//! whole requests; only `hostfactory serve` reads from clients itself.)

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use shared::api::BodyDeadline;
use shared::config::LocalTimeouts;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves `router` on `listener` until `shutdown` resolves, then lets the open connections
/// finish their current request.
pub async fn run(
    listener: TcpListener,
    router: Router,
    timeouts: LocalTimeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let body_limit = timeouts.body;
    let router = router.layer(tower::util::MapRequestLayer::new(move |mut request: Request| {
        request.extensions_mut().insert(BodyDeadline::after(body_limit));
        request
    }));
    let (stop, stopped) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(connection(stream, router.clone(), timeouts.headers, stopped.clone()));
            }
            // Out of file descriptors and the like: wait instead of spinning.
            Err(err) => {
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(stop);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One client connection: closed when its headers take longer than `header_timeout` (hyper
/// starts the clock when it waits for a request, so an idle keep-alive connection is closed too).
async fn connection(stream: TcpStream, router: Router, header_timeout: Duration, mut stop: watch::Receiver<()>) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut served = pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router)));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection closed");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}
