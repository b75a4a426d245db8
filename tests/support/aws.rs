//! Shared setup for the tests that talk to AWS-wire emulators (moto, s3s-fs) on a loopback
//! address (127.0.0.0/8).
//! Clients get their endpoint and test credentials explicitly, never through process-wide
//! environment variables, because tests run in parallel threads.

use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use updraft::runtime::aws::AwsTimeouts;

/// The emulator's URL from `var`; a missing emulator fails the test rather than skipping it.
pub fn emulator(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => {
            let host = url
                .strip_prefix("http://")
                .and_then(|rest| rest.split(':').next())
                .and_then(|h| h.parse::<std::net::Ipv4Addr>().ok());
            assert!(
                host.is_some_and(|h| h.is_loopback()),
                "{var}={url}: tests only talk to emulators on loopback (127.0.0.0/8)"
            );
            url
        }
        _ => panic!(
            "{var} is not set. These tests need AWS emulators on 127.0.0.1: \
             run them with scripts/test.sh, which installs and starts moto and s3s-fs"
        ),
    }
}

/// An SDK config that reaches `endpoint` with the emulators' test credentials.
pub async fn config_for(endpoint: &str, timeouts: AwsTimeouts) -> SdkConfig {
    updraft::runtime::aws::loader(timeouts)
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "updraft-tests",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

/// A server that accepts connections and never answers, like an overloaded endpoint.
pub async fn hanging_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Asserts `elapsed` is under `bound`, printing the measurement for the test log.
pub fn assert_fast(what: &str, elapsed: Duration, bound: Duration) {
    eprintln!("{what}: failed after {elapsed:?} (bound {bound:?})");
    assert!(
        elapsed < bound,
        "{what} took {elapsed:?}, over the bound {bound:?}"
    );
}

/// A server that answers every request as DynamoDB does when throttling (HTTP 400,
/// `ThrottlingException`), counting the requests: emulators cannot be made to throttle.
pub async fn throttling_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    canned_dynamo_error(
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
    )
    .await
}

/// Reads one HTTP/1.1 request head (up to the blank line) from `socket` into `buf`; `None` at EOF.
async fn read_head(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A proxy to an S3 emulator at `upstream` that fails every UploadPart with HTTP 500 and
/// forwards everything else, one request per connection: a part that cannot be stored, in
/// the middle of a real multipart upload. Returns its URL and how many parts it refused.
pub async fn part_failing_proxy(
    upstream: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = upstream
        .strip_prefix("http://")
        .expect("an http:// upstream")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(head_end) = read_head(&mut client, &mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let request_line = head.lines().next().unwrap_or("").to_owned();
                if request_line.starts_with("PUT ") && request_line.contains("partNumber=") {
                    let body_len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut chunk = [0u8; 65536];
                    while buf.len() < head_end + body_len {
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>injected part failure</Message></Error>";
                    let answer = format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                // Ask the emulator to close after answering, so the next request comes on a
                // new connection and is inspected too.
                let first_line_end = head.find("\r\n").map(|i| i + 2).unwrap_or(0);
                let mut forwarded = buf[..first_line_end].to_vec();
                forwarded.extend_from_slice(b"Connection: close\r\n");
                forwarded.extend_from_slice(&buf[first_line_end..]);
                if server.write_all(&forwarded).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), refused)
}

/// A fresh table on moto (`UPDRAFT_TEST_MOTO`) and bucket on s3s-fs (`UPDRAFT_TEST_S3S`), and
/// the environment that points the `updraft` binary at them: per-service endpoints, test
/// credentials, no IMDS, `UPDRAFT_BACKEND=aws`.
pub async fn binary_env() -> Vec<(String, String)> {
    let moto = emulator("UPDRAFT_TEST_MOTO");
    let s3s = emulator("UPDRAFT_TEST_S3S");
    let table = unique("releases");
    let devices = unique("devices");
    let bucket = unique("bundles");
    let ddb = updraft::runtime::aws::dynamo_client(&config_for(&moto, AwsTimeouts::OPERATOR).await);
    updraft::store::dynamo::tables::create_table(&ddb, &table)
        .await
        .expect("create table");
    updraft::store::dynamo::tables::create_devices_table(&ddb, &devices)
        .await
        .expect("create devices table");
    let s3 = updraft::runtime::aws::s3_client(&config_for(&s3s, AwsTimeouts::OPERATOR).await);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    [
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.as_str()),
        ("AWS_ENDPOINT_URL_S3", s3s.as_str()),
        // History names the caller: moto answers STS GetCallerIdentity too.
        ("AWS_ENDPOINT_URL_STS", moto.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("UPDRAFT_TABLE", table.as_str()),
        ("UPDRAFT_DEVICES_TABLE", devices.as_str()),
        ("UPDRAFT_BUCKET", bucket.as_str()),
        ("UPDRAFT_BACKEND", "aws"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `(&str, &str)` pairs for `Command::envs`.
pub fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A DynamoDB client for moto (`UPDRAFT_TEST_MOTO`).
pub async fn moto_dynamo(timeouts: AwsTimeouts) -> aws_sdk_dynamodb::Client {
    let conf = config_for(&emulator("UPDRAFT_TEST_MOTO"), timeouts).await;
    updraft::runtime::aws::dynamo_client(&conf)
}

/// A server that answers every request with HTTP 400 and `body` (a DynamoDB JSON error),
/// counting the requests: for answers emulators never give (transaction conflicts, idempotency
/// mismatches).
pub async fn canned_dynamo_error(
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head_end) = read_head(&mut socket, &mut buf).await {
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let body_len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut chunk = [0u8; 8192];
                    while buf.len() < head_end + body_len {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + body_len);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: canned\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), count)
}

/// Records the DynamoDB operation of every HTTP request a client sends (retries included),
/// with the number of items of a TransactWriteItems: what tests count store calls with.
#[derive(Debug, Clone, Default)]
pub struct CallLog(pub std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>);

impl CallLog {
    /// A DynamoDB client of `conf` whose calls this log records.
    pub fn client(&self, conf: &SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(conf)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// The operations recorded since the last look (`GetItem`, `Query`, …), forgotten.
    pub fn take_ops(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let req = context.request();
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        let items = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
            .unwrap_or(0);
        self.0.lock().unwrap().push((op, items));
        Ok(())
    }
}
