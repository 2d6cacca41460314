//! A hello-world `lambda_http` bootstrap, built with the functions' release profile and
//! dependency versions: what a function costs beyond it (size, init, memory) is what primer
//! adds.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async { Ok::<_, Error>(Response::new(Body::from("hello"))) })).await
}
