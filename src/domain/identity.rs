//! Citizens' identity tokens: JWTs from the consular app's identity service, verified
//! with the keys in the configuration. The token's `sub` names a stable citizen, so one
//! person sees the same conversations on every device.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Identity;
use crate::error::{AppError, AppResult};

/// Claims read from a citizen's identity token.
#[derive(Debug, Deserialize, Serialize)]
pub struct IdentityClaims {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

/// Verifies identity tokens with the keys from config.
pub struct IdentityVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

impl IdentityVerifier {
    pub fn from_config(cfg: &Identity) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if !cfg.hs256_secret.is_empty() {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(cfg.hs256_secret.expose().as_bytes()),
            ));
        }
        if !cfg.rs256_public_key_pem.trim().is_empty() {
            let k =
                DecodingKey::from_rsa_pem(cfg.rs256_public_key_pem.as_bytes()).map_err(|e| {
                    anyhow::anyhow!(
                        "identity.rs256_public_key_pem is not a PEM RSA public key: {e}"
                    )
                })?;
            keys.push((Algorithm::RS256, k));
        }
        if !cfg.es256_public_key_pem.trim().is_empty() {
            let k = DecodingKey::from_ec_pem(cfg.es256_public_key_pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("identity.es256_public_key_pem is not a PEM EC public key: {e}")
            })?;
            keys.push((Algorithm::ES256, k));
        }
        Ok(IdentityVerifier {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The verified claims, or `unauthorized` (never which check failed in detail).
    /// `exp` is required; `nbf`, when present, is honoured.
    pub fn verify(&self, token: &str) -> AppResult<IdentityClaims> {
        if !self.enabled() {
            return Err(AppError::InvalidInput(
                "identity tokens are not accepted by this server".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AppError::Unauthorized("identity_token is not a valid JWT".into()))?;
        let Some((alg, key)) = self.keys.iter().find(|(a, _)| *a == header.alg) else {
            return Err(AppError::Unauthorized(
                "identity_token is signed with an algorithm this server does not accept".into(),
            ));
        };
        let mut v = Validation::new(*alg);
        v.set_required_spec_claims(&["exp", "sub"]);
        v.validate_nbf = true;
        if !self.issuer.is_empty() {
            v.set_issuer(&[&self.issuer]);
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&[&self.audience]);
        }
        let data = jsonwebtoken::decode::<IdentityClaims>(token, key, &v).map_err(|e| {
            tracing::debug!(error = %e, "identity token refused");
            AppError::Unauthorized("identity_token is invalid, expired or not yet valid".into())
        })?;
        if data.claims.sub.trim().is_empty() || data.claims.sub.len() > 255 {
            return Err(AppError::Unauthorized(
                "identity_token has no usable sub".into(),
            ));
        }
        Ok(data.claims)
    }
}
