//! A placeholder for a service whose contract is published but whose
//! implementation has not landed: every method answers UNIMPLEMENTED, naming
//! the method and saying so, instead of tonic's bare "unimplemented".

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{Request, Response};
use pulse_proto::tonic::Status;
use pulse_proto::tonic::body::Body;
use pulse_proto::tonic::server::NamedService;
use tower_service::Service;

/// `Pending::<TrainerServiceServer<()>>::new()` serves the trainer's name.
pub struct Pending<S>(PhantomData<fn() -> S>);

impl<S> Pending<S> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<S> Default for Pending<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Clone for Pending<S> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S: NamedService> NamedService for Pending<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> Service<Request<Body>> for Pending<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_string();
        std::future::ready(Ok(Status::unimplemented(format!(
            "{}/{method} is not served yet: its contract is published (server reflection lists it) \
             but this Pulse build does not implement the service; lineage and admin are available",
            S::NAME
        ))
        .into_http()))
    }
}
