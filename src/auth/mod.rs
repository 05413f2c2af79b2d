//! Who may subscribe: anyone (`none`), holders of a JWT ([`jwt`]), or whoever an
//! authorization endpoint allows ([`upstream`]). Decided before the stream opens.

pub mod jwt;
pub mod upstream;

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use serde_json::Value;

use crate::reply::{self, Body};
use crate::topic::Filter;
use jwt::{Denied, JwtAuth};
use upstream::{Forward, Outcome};

/// `subscribers.auth` and its settings, as configured.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    #[default]
    None,
    Jwt(Arc<JwtAuth>),
    Upstream(upstream::Settings),
}

impl Mode {
    /// As written in `subscribers.auth`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Jwt(_) => "jwt",
            Mode::Upstream(_) => "upstream",
        }
    }
}

/// What the subscriber gets.
#[derive(Debug)]
pub enum Decision {
    /// Open the stream; end it at `until` (the token's expiry) if set.
    /// `identity` is the token's claims or the auth endpoint's JSON answer.
    Allow {
        until: Option<SystemTime>,
        identity: Option<Arc<Value>>,
    },
    /// A 401 or 403 answer.
    Refuse(Response<Body>),
    /// The authorization endpoint is unavailable: "try later".
    TryLater,
}

/// Decides subscriptions; holds the forward-auth client and cache.
#[derive(Debug)]
pub enum Authorizer {
    None,
    Jwt(Arc<JwtAuth>),
    Upstream(Box<Forward>),
}

impl Authorizer {
    pub fn new(mode: &Mode) -> Self {
        match mode {
            Mode::None => Authorizer::None,
            Mode::Jwt(j) => Authorizer::Jwt(j.clone()),
            Mode::Upstream(s) => Authorizer::Upstream(Box::new(Forward::new(s.clone()))),
        }
    }

    pub async fn decide(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        filters: &[Filter],
    ) -> Decision {
        match self {
            Authorizer::None => Decision::Allow {
                until: None,
                identity: None,
            },
            Authorizer::Jwt(auth) => {
                let result = match auth.token(headers, query) {
                    None => Err(Denied::Missing),
                    Some(token) => auth.check(&token, filters),
                };
                match result {
                    Ok(grant) => Decision::Allow {
                        until: grant.until,
                        identity: Some(Arc::new(grant.claims)),
                    },
                    Err(denied) => {
                        tracing::info!(reason = ?reason(&denied), "subscriber refused");
                        Decision::Refuse(jwt_refusal(denied, auth.cookie.as_deref()))
                    }
                }
            }
            Authorizer::Upstream(forward) => match forward.check(headers, filters).await {
                Outcome::Allow(answer) => Decision::Allow {
                    until: None,
                    identity: answer,
                },
                Outcome::Refuse(status) => {
                    tracing::info!(
                        status = status.as_u16(),
                        "subscriber refused by the auth endpoint"
                    );
                    Decision::Refuse(if status == StatusCode::FORBIDDEN {
                        reply::error(
                            status,
                            "forbidden",
                            "The authorization endpoint does not allow these topics for this subscriber.",
                        )
                    } else {
                        challenge(reply::error(
                            status,
                            "unauthorized",
                            "The authorization endpoint did not accept this subscriber's credentials.",
                        ))
                    })
                }
                Outcome::Unavailable => Decision::TryLater,
            },
        }
    }
}

impl Authorizer {
    /// The 403 when a verified identity (the token's claims) does not cover
    /// topics the request chose. The auth endpoint vouches only for what it was
    /// sent, so under `upstream` such topics were checked by [`Authorizer::decide`].
    pub fn uncovered(
        &self,
        identity: Option<&Value>,
        filters: &[Filter],
    ) -> Option<Response<Body>> {
        match (self, identity) {
            (Authorizer::Jwt(auth), Some(claims)) => auth
                .covers(claims, filters)
                .err()
                .map(|denied| jwt_refusal(denied, auth.cookie.as_deref())),
            _ => None,
        }
    }
}

fn reason(d: &Denied) -> &'static str {
    match d {
        Denied::Missing => "token_missing",
        Denied::Invalid => "token_invalid",
        Denied::Expired => "token_expired",
        Denied::Forbidden(_) => "topic_forbidden",
    }
}

fn jwt_refusal(denied: Denied, cookie: Option<&str>) -> Response<Body> {
    let code = reason(&denied);
    match denied {
        Denied::Missing => {
            let cookie = cookie.map_or(String::new(), |c| format!(", the {c} cookie"));
            challenge(reply::error(
                StatusCode::UNAUTHORIZED,
                code,
                format!(
                    "This stream needs a token: send it as Authorization: Bearer{cookie}, or the access_token query parameter."
                ),
            ))
        }
        Denied::Invalid => challenge(reply::error(
            StatusCode::UNAUTHORIZED,
            code,
            "The token was refused: its format, algorithm, signature, issuer, audience or start time is not accepted.",
        )),
        Denied::Expired => challenge(reply::error(
            StatusCode::UNAUTHORIZED,
            code,
            "The token has expired; get a new one and reconnect.",
        )),
        Denied::Forbidden(topic) => reply::error(
            StatusCode::FORBIDDEN,
            code,
            format!("The token does not allow following {topic:?}."),
        ),
    }
}

/// RFC 6750: a 401 says which scheme it wants.
fn challenge(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}
