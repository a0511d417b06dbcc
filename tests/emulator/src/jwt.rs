//! HS256 JWTs with DittoFS's claims (`internal/controlplane/api/auth/claims.go`): issuer `dittofs`, the user's
//! UUID in `uid`, `role`, `groups`, `token_type` access|refresh and `must_change_password` when set.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha384, Sha512};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub uid: String,
    pub username: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_change_password: bool,
}

/// Why a token was refused; the HTTP layer maps these to the real server's messages.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed or badly signed token")]
    Invalid,
    #[error("token expired")]
    Expired,
}

#[derive(Debug, Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

/// Verifies an HMAC signature with the algorithm the token's header names.
fn hmac_verifies(alg: &str, secret: &[u8], signing_input: &str, signature: &[u8]) -> bool {
    macro_rules! verify {
        ($digest:ty) => {{
            let mut mac = Hmac::<$digest>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(signing_input.as_bytes());
            mac.verify_slice(signature).is_ok()
        }};
    }
    match alg {
        "HS256" => verify!(Sha256),
        "HS384" => verify!(Sha384),
        "HS512" => verify!(Sha512),
        _ => false,
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl Signer {
    pub fn new(secret: &str) -> Self {
        Signer { secret: secret.as_bytes().to_vec() }
    }

    fn mac(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(signing_input.as_bytes());
        mac
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims always serialize");
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let signature = self.mac(&input).finalize().into_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Checks signature, algorithm and expiry (no leeway, as golang-jwt); the token type is the caller's check.
    /// Like the real key function, any HMAC algorithm is accepted, not only the HS256 the server signs with.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (input, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, payload) = input.split_once('.').ok_or(TokenError::Invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Invalid)?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Invalid)?)
                .map_err(|_| TokenError::Invalid)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or_default();
        if !hmac_verifies(alg, &self.secret, input, &signature) {
            return Err(TokenError::Invalid);
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Invalid)?)
            .map_err(|_| TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64, token_type: &str) -> Claims {
        Claims {
            iss: "dittofs".into(),
            sub: "admin".into(),
            exp,
            iat: exp - 900,
            uid: "8e26ac41-7e00-4ae2-afb5-ab8f1b438c53".into(),
            username: "admin".into(),
            role: "admin".into(),
            groups: vec!["admins".into()],
            token_type: token_type.into(),
            must_change_password: false,
        }
    }

    #[test]
    fn round_trip_expiry_and_tampering() {
        let signer = Signer::new("0123456789abcdef0123456789abcdef");
        let token = signer.sign(&claims(1_000, "access"));
        assert_eq!(signer.verify(&token, 999).unwrap(), claims(1_000, "access"));
        assert_eq!(signer.verify(&token, 1_000), Err(TokenError::Expired));
        assert_eq!(Signer::new("another-secret-another-secret-xxxx").verify(&token, 0), Err(TokenError::Invalid));
        assert_eq!(signer.verify("garbage", 0), Err(TokenError::Invalid));
    }

    #[test]
    fn any_hmac_algorithm_verifies_but_none_does_not() {
        use hmac::{Hmac, Mac};
        let secret = "0123456789abcdef0123456789abcdef";
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(1_000, "access")).unwrap());
        let hs512 = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#));
        let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(hs512.as_bytes());
        let token = format!("{hs512}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert_eq!(Signer::new(secret).verify(&token, 0), Ok(claims(1_000, "access")));
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(Signer::new(secret).verify(&none, 0), Err(TokenError::Invalid));
    }

    #[test]
    fn verifies_a_token_of_the_real_server_shape() {
        // Claims in the order and shape the real server issues (docs/dittofs-api.md#authentication-and-tokens).
        let signer = Signer::new("0123456789abcdef0123456789abcdef");
        let token = signer.sign(&claims(1_795_319_330, "access"));
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(json.starts_with(r#"{"iss":"dittofs","sub":"admin","exp":1795319330,"iat":"#), "{json}");
        assert!(!json.contains("must_change_password"));
    }
}
