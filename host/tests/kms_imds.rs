//! Instance-role credentials from a fake EC2 metadata service that speaks IMDSv2 as AWS documents it: a session
//! token from `PUT /latest/api/token`, required on every later `GET` (401 without it). botocore's own IMDS fetcher
//! (the AWS CLI's) reads the same credentials from the fake, so the fake and our client agree with an
//! independent implementation. Needs `python3` with botocore (scripts/setup).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use host::kms::{InstanceMetadata, KmsError};

const TOKEN: &str = "AQAEAFakeSessionTokenForTheTest==";
const ROLE: &str = "k3s-daas-keybroker";

#[derive(Clone)]
struct Fake {
    /// `Expiration` of the credentials handed out, as the service writes it.
    expiration: String,
    /// `Code` of the credentials document.
    code: &'static str,
    /// Credentials documents served.
    served: Arc<AtomicUsize>,
}

async fn token(headers: HeaderMap) -> Result<&'static str, StatusCode> {
    // IMDSv2 refuses a token request without a TTL.
    headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .ok_or(StatusCode::BAD_REQUEST)?;
    Ok(TOKEN)
}

fn authorized(headers: &HeaderMap) -> Result<(), StatusCode> {
    match headers.get("x-aws-ec2-metadata-token") {
        Some(v) if v == TOKEN => Ok(()),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn roles(headers: HeaderMap) -> Result<&'static str, StatusCode> {
    authorized(&headers)?;
    Ok(ROLE)
}

async fn role(
    State(fake): State<Fake>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    authorized(&headers)?;
    if name != ROLE {
        return Err(StatusCode::NOT_FOUND);
    }
    let n = fake.served.fetch_add(1, Ordering::SeqCst);
    // The document's exact shape, whitespace included, as the service serves it.
    Ok(format!(
        "{{\n  \"Code\" : \"{}\",\n  \"LastUpdated\" : \"2026-11-21T12:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAFAKE{n}\",\n  \"SecretAccessKey\" : \"fake/secret+{n}\",\n  \"Token\" : \"fake-session-token-{n}\",\n  \"Expiration\" : \"{}\"\n}}",
        fake.code, fake.expiration
    ))
}

async fn start(fake: Fake) -> SocketAddr {
    let app = Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/iam/security-credentials/", get(roles))
        .route(
            "/latest/meta-data/iam/security-credentials/{name}",
            get(role),
        )
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn fake(expires_in: jiff::SignedDuration, code: &'static str) -> Fake {
    let expiration = (jiff::Timestamp::now() + expires_in)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Fake {
        expiration,
        code,
        served: Arc::new(AtomicUsize::new(0)),
    }
}

/// What botocore's `InstanceMetadataFetcher` reads from `base_url`: `access_key token`.
fn botocore_reads(base_url: &str) -> String {
    let script = r#"
import sys
from botocore.utils import InstanceMetadataFetcher
c = InstanceMetadataFetcher(timeout=2, num_attempts=1, base_url=sys.argv[1]).retrieve_iam_role_credentials()
print(c["access_key"], c["token"])
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, base_url])
        .output()
        .expect("python3 with botocore (scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn role_credentials_come_from_imdsv2_and_are_cached_until_near_expiry() {
    let fake = fake(jiff::SignedDuration::from_hours(6), "Success");
    let served = Arc::clone(&fake.served);
    let addr = start(fake).await;
    let url = format!("http://{addr}");

    // The independent reader first: botocore gets the first document.
    let b = tokio::task::spawn_blocking({
        let url = url.clone();
        move || botocore_reads(&url)
    })
    .await
    .unwrap();
    assert_eq!(b, "ASIAFAKE0 fake-session-token-0");

    let imds = InstanceMetadata::new(&url).unwrap();
    let c = imds.credentials().await.unwrap();
    assert_eq!(c.access_key_id, "ASIAFAKE1");
    assert_eq!(c.secret_access_key, "fake/secret+1");
    assert_eq!(c.session_token.as_deref(), Some("fake-session-token-1"));
    // Six hours left: the second call is served from the cache.
    let again = imds.credentials().await.unwrap();
    assert_eq!(again.access_key_id, "ASIAFAKE1");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn credentials_about_to_expire_are_fetched_again() {
    let fake = fake(jiff::SignedDuration::from_mins(4), "Success");
    let served = Arc::clone(&fake.served);
    let imds = InstanceMetadata::new(&format!("http://{}", start(fake).await)).unwrap();
    assert_eq!(imds.credentials().await.unwrap().access_key_id, "ASIAFAKE0");
    assert_eq!(imds.credentials().await.unwrap().access_key_id, "ASIAFAKE1");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failures_say_which_step_failed() {
    // The service reports a problem with the role.
    let imds = InstanceMetadata::new(&format!(
        "http://{}",
        start(fake(
            jiff::SignedDuration::from_hours(1),
            "AssumeRoleUnauthorizedAccess"
        ))
        .await
    ))
    .unwrap();
    let e = imds.credentials().await.unwrap_err().to_string();
    assert!(
        e.contains("reading the role's credentials") && e.contains("AssumeRoleUnauthorizedAccess"),
        "{e}"
    );

    // Nothing listens: the error names the first step.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let e = InstanceMetadata::new(&format!("http://{addr}"))
        .unwrap()
        .credentials()
        .await
        .unwrap_err();
    assert!(
        matches!(e, KmsError::Imds { step, .. } if step.contains("session token")),
        "{e}"
    );

    // Only plain http without a path is an IMDS address.
    for bad in [
        "https://169.254.169.254",
        "http://169.254.169.254/latest",
        "nonsense",
    ] {
        assert!(
            matches!(
                InstanceMetadata::new(bad),
                Err(KmsError::InvalidEndpoint { .. })
            ),
            "{bad}"
        );
    }
}
