//! Our SigV4 signer against an independent one: botocore's `SigV4Auth.add_auth` (the signer of the AWS CLI and
//! boto3), run on the same KMS requests at the same instant. Needs `python3` with botocore (scripts/setup).

use std::io::Write;
use std::process::{Command, Stdio};

use host::kms::sigv4::{self, Credentials, SigningInput};

/// Signs each request in `cases` (JSON list) with botocore; returns its Authorization headers and the headers it
/// set, one JSON object per case.
const BOTOCORE_SIGN: &str = r#"
import datetime, json, sys
from unittest import mock
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

out = []
for c in json.load(sys.stdin):
    request = AWSRequest(method="POST", url=c["url"], data=c["body"].encode(), headers=c["headers"])
    now = datetime.datetime.fromtimestamp(c["unix"], datetime.timezone.utc).replace(tzinfo=None)
    creds = Credentials(c["akid"], c["secret"], c["token"])
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        SigV4Auth(creds, "kms", c["region"]).add_auth(request)
    out.append({"authorization": request.headers["Authorization"],
                "x-amz-date": request.headers["X-Amz-Date"]})
print(json.dumps(out))
"#;

struct Case {
    host: &'static str,
    url: &'static str,
    target: &'static str,
    body: &'static str,
    region: &'static str,
    unix: u64,
    credentials: Credentials,
}

fn cases() -> Vec<Case> {
    let long_term = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    let temporary = Credentials {
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: "another/secret+key".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==".into()),
    };
    vec![
        Case {
            host: "kms.us-east-1.amazonaws.com",
            url: "https://kms.us-east-1.amazonaws.com/",
            target: "TrentService.GenerateDataKey",
            body: r#"{"KeyId":"alias/k3s-daas","NumberOfBytes":32,"Recipient":{"AttestationDocument":"hEShATgioFkQ","KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}}"#,
            region: "us-east-1",
            unix: 1_440_938_160,
            credentials: long_term.clone(),
        },
        Case {
            host: "127.0.0.1:4599",
            url: "http://127.0.0.1:4599/",
            target: "TrentService.Decrypt",
            body: r#"{"CiphertextBlob":"AQIDBA==","KeyId":"arn:aws:kms:eu-west-2:111122223333:key/1234","Recipient":{"AttestationDocument":"hEShATgi","KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}}"#,
            region: "eu-west-2",
            unix: 1_763_700_000,
            credentials: temporary,
        },
        Case {
            host: "kms-fips.us-gov-west-1.amazonaws.com",
            url: "https://kms-fips.us-gov-west-1.amazonaws.com/",
            target: "TrentService.Decrypt",
            body: "",
            region: "us-gov-west-1",
            unix: 951_782_400, // 2000-02-29
            credentials: long_term,
        },
    ]
}

#[test]
fn signatures_match_botocore() {
    let cases = cases();
    let input: Vec<_> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "url": c.url,
                "body": c.body,
                "headers": {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": c.target},
                "unix": c.unix,
                "akid": c.credentials.access_key_id,
                "secret": c.credentials.secret_access_key,
                "token": c.credentials.session_token,
                "region": c.region,
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", BOTOCORE_SIGN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup installs botocore)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "botocore signer failed (run scripts/setup to install botocore): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(theirs.len(), cases.len());
    for (case, theirs) in cases.iter().zip(theirs) {
        let date = sigv4::amz_date(case.unix);
        assert_eq!(theirs["x-amz-date"], date.as_str());
        let ours = sigv4::sign(
            &SigningInput {
                host: case.host,
                headers: &[
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", case.target),
                ],
                body: case.body.as_bytes(),
                region: case.region,
                service: "kms",
                amz_date: &date,
            },
            &case.credentials,
        );
        assert_eq!(
            ours.authorization, theirs["authorization"],
            "{} {}",
            case.url, case.target
        );
    }
}
