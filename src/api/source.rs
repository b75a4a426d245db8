//! Where a request came from, for evidence that must cost more than one client can fake
//! (domain::evidence). The entrypoint knows it and puts it in the request's extensions: the
//! TCP peer for `updraft serve`, API Gateway's `requestContext.http.sourceIp` on Lambda, and
//! `X-Forwarded-For` only when the operator says a proxy in front sets it (`--trust-proxy`).

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::Extensions;

/// The source address of a request, as the entrypoint established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIp(pub IpAddr);

/// The source of a request, if its entrypoint knew it.
pub fn source_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<SourceIp>().map(|s| s.0)
}

/// The last address of `X-Forwarded-For`: the one the (trusted) proxy in front of us added.
/// Earlier entries were written by the client and prove nothing.
fn forwarded_for(req: &Request) -> Option<IpAddr> {
    let last = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The router of `updraft serve`, with each request's source: the TCP peer (served with
/// `into_make_service_with_connect_info::<SocketAddr>`), or with `trust_proxy` the address
/// `X-Forwarded-For` ends with (falling back to the peer).
pub fn with_source(router: Router, trust_proxy: bool) -> Router {
    router.layer(tower::util::MapRequestLayer::new(
        move |mut req: Request| {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let ip = if trust_proxy {
                forwarded_for(&req).or(peer)
            } else {
                peer
            };
            if let Some(ip) = ip {
                req.extensions_mut().insert(SourceIp(ip));
            }
            req
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: &[&str]) -> Request {
        let mut b = axum::http::Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn forwarded_for_takes_the_proxys_entry() {
        assert_eq!(
            forwarded_for(&req(&["1.1.1.1, 203.0.113.9"])),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            forwarded_for(&req(&["1.1.1.1", "2001:db8::1"])),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            forwarded_for(&req(&["203.0.113.9:4711"])),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(forwarded_for(&req(&["nonsense"])), None);
        assert_eq!(forwarded_for(&req(&[])), None);
    }
}
