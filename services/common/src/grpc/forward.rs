//! Forwarding of services this process does not host to the process that
//! does (`pulse serve <service>` with `trainer_url` and the like set), so a
//! client may call any Pulse process for any service: one endpoint for the
//! SDK and the CLI, with or without a load balancer routing by path.
//!
//! The layer sits outside the others: a forwarded call is authenticated,
//! de-duplicated and counted once, by the process that serves it.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use pulse_proto::tonic::Status;
use pulse_proto::tonic::body::Body;
use pulse_proto::tonic::transport::Channel;
use tower_layer::Layer;
use tower_service::Service;

/// Service name (`pulse.trainer.v1.TrainerService`) → a channel to the
/// process serving it.
#[derive(Clone, Debug, Default)]
pub struct ForwardLayer {
    routes: Arc<HashMap<String, (String, Channel)>>,
}

impl ForwardLayer {
    /// `routes`: (service name, its URL for messages, a channel to it).
    pub fn new(routes: impl IntoIterator<Item = (String, String, Channel)>) -> Self {
        Self { routes: Arc::new(routes.into_iter().map(|(name, url, ch)| (name, (url, ch))).collect()) }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Forward { inner, routes: self.routes.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Forward<S> {
    inner: S,
    routes: Arc<HashMap<String, (String, Channel)>>,
}

impl<S, B> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + Clone + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let service = req.uri().path().trim_start_matches('/').split('/').next().unwrap_or_default();
        let Some((url, channel)) = self.routes.get(service).cloned() else {
            let fut = self.inner.call(req);
            return Box::pin(async move { Ok(fut.await?.map(Body::new)) });
        };
        Box::pin(async move {
            use tower::ServiceExt;
            let mut channel = channel;
            // The channel is a buffer: it must be ready before each call.
            let sent = match channel.ready().await {
                Ok(ready) => ready.call(req).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(response) => Ok(response),
                Err(e) => {
                    let service = url.clone();
                    tracing::warn!(to = %service, error = %e, "forwarding failed");
                    Ok(Status::unavailable(format!(
                        "{service} is not reachable from this Pulse process ({e}); check that it runs and that \
                         its address is configured, then retry"
                    ))
                    .into_http())
                }
            }
        })
    }
}
