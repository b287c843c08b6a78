//! AWS Signature Version 4 for the few KMS requests the key broker makes: `POST /` with a JSON body and no
//! query string. Follows the AWS "Create a signed AWS API request" procedure; cross-checked against botocore's
//! `SigV4Auth` (`host/tests/kms_sigv4.rs`, and the fake KMS of the enclave's KMS boot test).

use std::fmt;

use ring::{digest, hmac};

/// Long-term or temporary AWS credentials. `Debug` redacts the secrets.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials (sent as `X-Amz-Security-Token`, and signed).
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One request to sign: `POST /` to `host` with these extra headers and this body.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// The `Host` header as sent (`host` or `host:port` when the port is not the scheme's default).
    pub host: &'a str,
    /// Headers besides `Host`, `X-Amz-Date` and `X-Amz-Security-Token`, e.g. `Content-Type` and `X-Amz-Target`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes.
    pub body: &'a [u8],
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service name in the credential scope (`kms`).
    pub service: &'a str,
    /// The signing time as `YYYYMMDD'T'HHMMSS'Z'`, sent as `X-Amz-Date`.
    pub amz_date: &'a str,
}

/// What to add to the request: every header that was signed (lower-case names), and `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Signed headers in canonical order, `(lower-case name, value)`, `host` included.
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header's value.
    pub authorization: String,
}

/// Signs `input` with `credentials`.
///
/// `amz_date` must be `YYYYMMDDTHHMMSSZ`; its first eight characters are the scope's date. A malformed date
/// makes a signature AWS rejects, nothing worse.
#[must_use]
pub fn sign(input: &SigningInput<'_>, credentials: &Credentials) -> Signed {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), canonical_value(v)))
        .collect();
    headers.push(("host".into(), input.host.to_owned()));
    headers.push(("x-amz-date".into(), input.amz_date.to_owned()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(digest::digest(&digest::SHA256, input.body))
    );
    let date = input.amz_date.get(..8).unwrap_or(input.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        hex::encode(digest::digest(
            &digest::SHA256,
            canonical_request.as_bytes()
        ))
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [input.region, input.service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
        headers,
    }
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces folded to one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ` (UTC).
#[must_use]
pub fn amz_date(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after H. Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_date_formats_utc() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        // 2015-08-30T12:36:00Z, the date of AWS's SigV4 examples.
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        // 2024-02-29T23:59:59Z (leap day).
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("token-secret".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret") && !shown.contains("token-secret"));
    }
}
