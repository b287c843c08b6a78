//! Compact JWS (RFC 7515) with ES256, as service-account tokens use it:
//! `base64url(header).base64url(claims).base64url(signature)`.

use base64::Engine;
use serde_json::{Value, json};

use super::keys::DerivedKey;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// Why a token was not accepted (the details are logged, never sent: a
/// client sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three dot-separated base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// Not ES256, or another key id.
    #[error("unexpected algorithm or key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
}

/// Signs `claims` with `key`: a compact ES256 JWS with the key's id.
///
/// # Errors
/// [`JwtError::Signing`].
pub fn sign(key: &DerivedKey, claims: &Value) -> Result<String, JwtError> {
    let header = json!({"alg": "ES256", "kid": key.key_id()});
    let mut out = b64().encode(header.to_string());
    out.push('.');
    out.push_str(&b64().encode(claims.to_string()));
    let sig = key.sign(out.as_bytes()).map_err(|_| JwtError::Signing)?;
    out.push('.');
    out.push_str(&b64().encode(sig));
    Ok(out)
}

/// Decodes the claims of `token` without checking the signature (to find
/// out which issuer's rules apply).
///
/// # Errors
/// [`JwtError::Malformed`].
pub fn peek_claims(token: &str) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = b64().decode(claims).map_err(|_| JwtError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    v.is_object().then_some(v).ok_or(JwtError::Malformed)
}

/// Verifies `token`'s ES256 signature by `key`; returns its claims.
///
/// # Errors
/// [`JwtError`] for a malformed token, another algorithm or key id, or a bad signature.
pub fn verify(key: &DerivedKey, token: &str) -> Result<Value, JwtError> {
    let (signed, sig) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, _) = signed.split_once('.').ok_or(JwtError::Malformed)?;
    let header: Value = b64()
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(JwtError::UnknownKey);
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str)
        && kid != key.key_id()
    {
        return Err(JwtError::UnknownKey);
    }
    let sig = b64().decode(sig).map_err(|_| JwtError::Malformed)?;
    if !key.verify(signed.as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }
    peek_claims(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tampering() {
        let key = DerivedKey::derive(&[1; 32]).unwrap();
        let other = DerivedKey::derive(&[2; 32]).unwrap();
        let t = sign(&key, &json!({"sub": "x"})).unwrap();
        assert_eq!(verify(&key, &t).unwrap()["sub"], "x");
        assert_eq!(verify(&other, &t), Err(JwtError::UnknownKey));
        let forged = sign(&other, &json!({"sub": "x"})).unwrap();
        let (h, rest) = t.split_once('.').unwrap();
        let (_, fsig) = forged.rsplit_once('.').unwrap();
        let (claims, _) = rest.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{h}.{claims}.{fsig}")),
            Err(JwtError::BadSignature)
        );
        let evil = b64().encode(json!({"sub": "admin"}).to_string());
        let (_, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{h}.{evil}.{sig}")),
            Err(JwtError::BadSignature)
        );
        assert_eq!(verify(&key, "a.b"), Err(JwtError::Malformed));
        let none = format!("{}.{claims}.", b64().encode(r#"{"alg":"none"}"#));
        assert_eq!(verify(&key, &none), Err(JwtError::UnknownKey));
        assert_eq!(peek_claims(&t).unwrap()["sub"], "x");
    }
}
