//! The Kubernetes client both binaries use: kube's default stack with a deadline on every response head.
//!
//! kube sets no read timeout (watch bodies live for minutes), and kube-runtime's idle timeout only starts
//! once a watch has answered. So a request the apiserver accepts and never answers waits forever. The
//! fault suite hit exactly that: after an apiserver restart, the DittoServer watch sent to the new
//! apiserver got no response for four minutes, and the controller ignored every report meanwhile.
//! With a deadline the request fails, and the watcher or the reconcile retries it like any other error.
//! The deadline covers the wait for the response head only; a watch's events keep streaming after it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Uri};
use kube::client::ClientBuilder;
use tower::{BoxError, Layer, Service};

/// How long a watch may take to start answering. A healthy apiserver answers a watch at once (events
/// follow later); anything slower is a connection or an apiserver that will not answer.
pub const WATCH_DEADLINE: Duration = Duration::from_secs(5);

/// How long any other request may take to answer: above an admission chain's 10 s default webhook
/// timeout and the apiserver's own queueing, far below "forever".
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// A client from the usual sources (in-cluster ServiceAccount, `KUBECONFIG`, `~/.kube/config`) with
/// [`WATCH_DEADLINE`] and [`REQUEST_DEADLINE`].
pub async fn kube_client() -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(ClientBuilder::try_from(config)?.with_layer(&DeadlineLayer::default()).build())
}

/// A request the apiserver did not start answering in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the apiserver to {method} {path} within {limit:?}")]
pub struct NoAnswer {
    method: Method,
    path: String,
    limit: Duration,
}

/// Wraps a service so that each response head must arrive within its deadline.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    watch: Duration,
    request: Duration,
}

impl DeadlineLayer {
    pub fn new(watch: Duration, request: Duration) -> Self {
        Self { watch, request }
    }
}

impl Default for DeadlineLayer {
    fn default() -> Self {
        Self::new(WATCH_DEADLINE, REQUEST_DEADLINE)
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner, limits: *self }
    }
}

/// The service [`DeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limits: DeadlineLayer,
}

type ResponseFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = if is_watch(req.uri()) { self.limits.watch } else { self.limits.request };
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let response = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(limit, response).await {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => Err(Box::new(NoAnswer { method, path, limit }) as BoxError),
            }
        })
    }
}

/// A watch request (`?watch=true`, also spelled `1`), whose head comes first and body much later.
fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// An apiserver that accepts every request and never answers.
    fn silent() -> impl Service<Request<()>, Response = (), Error = BoxError, Future: Send> + Clone {
        tower::service_fn(|_req: Request<()>| std::future::pending::<Result<(), BoxError>>())
    }

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_fails_at_its_deadline() {
        let svc = DeadlineLayer::new(Duration::from_secs(5), Duration::from_secs(30)).layer(silent());
        let started = tokio::time::Instant::now();
        let err = svc.clone().oneshot(get("/apis/x/v1/things?&watch=true&resourceVersion=1")).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(5), "a watch gets the short deadline");
        assert_eq!(err.to_string(), "no answer from the apiserver to GET /apis/x/v1/things within 5s");

        let started = tokio::time::Instant::now();
        svc.oneshot(get("/api/v1/namespaces/a/services/b")).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30), "any other request the long one");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_passes_through() {
        let answering = tower::service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(7) });
        let svc = DeadlineLayer::default().layer(answering);
        assert_eq!(svc.oneshot(get("/api/v1/pods?watch=1")).await.unwrap(), 7);
    }

    #[test]
    fn only_watch_queries_are_watches() {
        assert!(is_watch(&"/x?watch=true".parse().unwrap()));
        assert!(is_watch(&"/x?limit=1&watch=1".parse().unwrap()));
        assert!(!is_watch(&"/x?watch=false".parse().unwrap()));
        assert!(!is_watch(&"/x/watch".parse().unwrap()));
        assert!(!is_watch(&"/x?labelSelector=watch%3Dtrue".parse().unwrap()));
    }
}
