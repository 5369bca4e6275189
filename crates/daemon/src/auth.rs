//! The bearer token: drawn at start from the OS's entropy, published in `daemon.json`, and
//! checked on every call but `/v1/health` and `/v1/openapi.yaml`.

use crate::error::ApiFailure;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// 32 random bytes as 64 hex digits: unguessable, and safe in a header and a JSON file.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    ChaCha20Rng::from_os_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference, so the answer time does not tell an
/// attacker how much of a guess was right.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The token the server expects, shared with the middleware through app data.
#[derive(Clone)]
pub struct Token(pub String);

/// Middleware: refuses a request without `Authorization: Bearer <token>` with 401.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A public path asked with another method reaches the `/v1` scope: answer 405 here,
    // rather than 401 (it carries nothing a token protects) and without passing the
    // request on to anything behind the token.
    if crate::routes::PUBLIC_PATHS.contains(&req.path()) {
        return Err(ApiFailure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {}", req.method(), req.path()),
        )
        .into());
    }
    let expected = req
        .app_data::<web::Data<Token>>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let unauthorized = |message: &str| {
        Err(ApiFailure::new(StatusCode::UNAUTHORIZED, message)
            .field("Authorization")
            .into())
    };
    match given {
        None => unauthorized(
            "missing 'Authorization: Bearer <token>' header; the token is in daemon.json",
        ),
        Some(token)
            if expected.is_empty() || !same_token(token.as_bytes(), expected.as_bytes()) =>
        {
            unauthorized("wrong token; read the current one from daemon.json")
        }
        Some(_) => next.call(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_compared_exactly() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_token(a.as_bytes(), a.as_bytes()));
        assert!(!same_token(a.as_bytes(), b.as_bytes()));
        assert!(!same_token(&a.as_bytes()[..63], a.as_bytes()));
    }
}
