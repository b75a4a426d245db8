//! The Lambda entrypoint: the same router as `updraft serve`, behind API Gateway (HTTP API,
//! payload v2) or a Function URL, on DynamoDB and S3. The same function also takes the
//! EventBridge schedule of template.yaml: a scheduled event runs one pass of the rollouts'
//! health gate. Only Lambda's Invoke delivers such an event; an HTTP request always arrives
//! wrapped in its `requestContext`, so no client can make one.

use std::sync::Arc;
use std::time::Instant;

use lambda_http::LambdaEvent;
use lambda_http::request::LambdaRequest;
use tower::ServiceExt;

use crate::api::router;
use crate::ops::OperatorStores;
use crate::runtime::backend::{Backend, ServeSettings, seconds_from_env};
use crate::runtime::emf::CheckMetrics;

/// Default `UPDRAFT_CACHE_TTL` on Lambda: a warm instance re-reads an app's releases at most
/// every 10 s, so a new release reaches every device within that, at one read per instance.
pub const LAMBDA_CACHE_TTL: u64 = 10;

/// Builds the clients once, warms the DynamoDB connection, then serves events until the
/// runtime stops the process.
pub async fn run() -> Result<(), lambda_http::Error> {
    let started = Instant::now();
    let backend = Backend::aws_from_env()?;
    let settings = ServeSettings {
        cache_ttl: seconds_from_env("UPDRAFT_CACHE_TTL", LAMBDA_CACHE_TTL)?,
        // Bounded to what SigV4 allows (1 s to 7 days), with a clear error at init otherwise.
        url_ttl: crate::runtime::aws::url_ttl_from_env()?,
        public_url: None,
    };
    let mut state = backend.app_state(settings).await?;
    // Counts instead of a log line per check (runtime/emf.rs says what a reclaimed instance loses).
    state.metrics = Arc::new(CheckMetrics::emf_stdout(seconds_from_env(
        "UPDRAFT_METRICS_INTERVAL",
        crate::runtime::emf::MAX_INTERVAL.as_secs(),
    )?));
    let state = Arc::new(state);
    // A cold TLS handshake costs far more than the check itself on a small function: pay it
    // during init (which is not billed at the same rate and runs at full CPU), not on the
    // first device. The read goes to an app id no app can have; failures are only logged.
    let warm = state.releases.get("updraft.warmup").await;
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        warmed = warm.is_ok(),
        "lambda initialised"
    );
    let app = tower::ServiceBuilder::new()
        .map_request(strip_stage)
        .map_request(source_ip)
        .service(router(state));
    let http = lambda_http::Adapter::from(app);
    let stores: Arc<tokio::sync::OnceCell<OperatorStores>> = Arc::default();
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: LambdaEvent<serde_json::Value>| {
            let (http, stores, backend) = (http.clone(), stores.clone(), backend.clone());
            async move {
                if is_scheduled(&event.payload) {
                    return rollout_pass(&backend, &stores).await;
                }
                let payload: LambdaRequest = serde_json::from_value(event.payload)?;
                let answer = http
                    .oneshot(LambdaEvent::new(payload, event.context))
                    .await
                    .map_err(|e| match e {})?;
                Ok(serde_json::to_value(answer)?)
            }
        },
    ))
    .await
}

/// An EventBridge scheduled event (`"source": "aws.events"`, `"detail-type": "Scheduled
/// Event"`), as the schedule of template.yaml sends it.
pub fn is_scheduled(payload: &serde_json::Value) -> bool {
    payload.get("source").and_then(|v| v.as_str()) == Some("aws.events")
        && payload.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
}

/// One pass of the rollouts' gate, on stores opened at the first scheduled event.
async fn rollout_pass(
    backend: &Backend,
    stores: &tokio::sync::OnceCell<OperatorStores>,
) -> Result<serde_json::Value, lambda_http::Error> {
    let stores = stores
        .get_or_try_init(|| backend.operator_stores(false, true))
        .await?;
    let rows = crate::ops::rollouts::tick(stores, None).await?;
    let changed = rows.iter().filter(|r| r.action.changed()).count();
    tracing::info!(rollouts = rows.len(), changed, "scheduled rollout pass");
    Ok(serde_json::json!({ "rollouts": rows }))
}

/// The address API Gateway saw the request come from (`requestContext.http.sourceIp`), for
/// the auto-pause evidence. Headers such as `X-Forwarded-For` are the client's to write.
fn source_ip(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = ip.and_then(|ip| ip.parse().ok()) {
        req.extensions_mut()
            .insert(crate::api::source::SourceIp(ip));
    }
    req
}

/// API Gateway puts a named stage in the path (`/prod/updates`) and lambda_http keeps it
/// there, while the router serves `/updates`: take it out, so any stage name works, not only
/// `$default`. (`AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` only stops lambda_http from adding it.)
fn strip_stage(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return req;
    };
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(stage.as_str()))
    else {
        return req;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return req;
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
