//! The tower layer that authenticates every call: `authorization: Bearer
//! <key>` → a [`Caller`] in the request's extensions. Health and reflection
//! are open; the admin key speaks only to the admin service, and tenant keys
//! never reach admin-only methods.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use pulse_proto::tonic::Status;
use pulse_proto::tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::is_infrastructure;
use crate::auth::{Auth, Caller};

const ADMIN_SERVICE: &str = "/pulse.admin.v1.AdminService/";

#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

fn bearer(req: &Request<Body>) -> Result<&str, Status> {
    let missing = || {
        Status::unauthenticated(
            "missing API key: send the header `authorization: Bearer <key>` (the SDK and CLI read PULSE_API_KEY)",
        )
    };
    let value = req.headers().get(http::header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

fn check_scope(path: &str, caller: &Caller) -> Result<(), Status> {
    let admin_only = pulse_proto::method(path).is_some_and(|m| m.admin_only);
    if admin_only && !caller.admin {
        let method = path.rsplit('/').next().unwrap_or(path);
        return Err(Status::permission_denied(format!("{method} needs the admin key, not a tenant API key")));
    }
    if caller.admin && !path.starts_with(ADMIN_SERVICE) {
        return Err(Status::permission_denied(
            "the admin key manages tenants and keys only; call tenant services with a tenant's API key \
             (`pulse admin create-key <tenant>` makes one)",
        ));
    }
    Ok(())
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_string();
        if is_infrastructure(&path) || pulse_proto::method(&path).is_some_and(|m| m.public) {
            return Box::pin(inner.call(req));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let token = match bearer(&req) {
                Ok(t) => t.to_string(),
                Err(status) => return Ok(status.into_http()),
            };
            let caller = match auth.authenticate(&token).await {
                Ok(c) => c,
                Err(e) => return Ok(super::status(e).into_http()),
            };
            if let Err(status) = check_scope(&path, &caller) {
                return Ok(status.into_http());
            }
            if let Some(tenant) = &caller.tenant_id {
                tracing::Span::current().record("tenant", tenant.as_str());
            }
            req.extensions_mut().insert(caller);
            inner.call(req).await
        })
    }
}
