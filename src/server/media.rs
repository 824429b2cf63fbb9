//! Content negotiation for GraphQL over HTTP: which media type a response
//! is sent as, from the request's `Accept` header (RFC 9110 12.5.1, with
//! q-values), as the GraphQL-over-HTTP specification asks.
//!
//! - `application/graphql-response+json` (the specification's own type):
//!   request errors, where nothing executed, are `4xx`;
//! - `application/json` (what older clients expect, and what `*/*` or no
//!   `Accept` at all gets): request errors are `200` with the errors in the
//!   body, because clients such as Apollo Client 3 and graphql-request 4/5
//!   drop the body of a non-2xx `application/json` response;
//! - neither acceptable: `406 Not Acceptable`.
//!
//! Every GraphQL response carries `Vary: Accept`, because the same URL
//! answers with either type.

use axum::http::HeaderValue;

/// The media types a GraphQL response can be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResponseMedia {
    /// `application/graphql-response+json`: request errors are 4xx.
    GraphqlResponseJson,
    /// `application/json`: request errors are 200.
    Json,
}

/// `Content-Type` of a GraphQL response in the specification's own type.
const GRAPHQL_RESPONSE_JSON: HeaderValue =
    HeaderValue::from_static("application/graphql-response+json; charset=utf-8");

/// `Content-Type` of a GraphQL response as plain JSON.
const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

impl ResponseMedia {
    /// The `Content-Type` header value.
    pub(super) fn content_type(self) -> HeaderValue {
        match self {
            Self::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            Self::Json => JSON,
        }
    }

    /// Whether a request error (nothing executed) is answered with a 4xx
    /// status; with `application/json` it is 200.
    pub(super) fn has_error_statuses(self) -> bool {
        self == Self::GraphqlResponseJson
    }
}

/// What an `Accept` header allows a GraphQL endpoint to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Accepted {
    /// The GraphQL response media type, or `None` when the client accepts
    /// neither (406).
    pub(super) media: Option<ResponseMedia>,
    /// Whether the client prefers an HTML page (GraphiQL) to a JSON
    /// error when it sends no query: only a browser that names
    /// `text/html` itself, not a `*/*` client.
    pub(super) prefers_html: bool,
}

impl Accepted {
    /// Negotiates from the `Accept` header value (`None`: no header, which
    /// is read as `application/json`).
    pub(super) fn from_header(accept: Option<&HeaderValue>) -> Self {
        let Some(accept) = accept else {
            return Self::DEFAULT;
        };
        let bytes = accept.as_bytes();
        // The common values, recognised without parsing.
        match bytes {
            b"*/*" | b"application/json" | b"" => return Self::DEFAULT,
            b"application/graphql-response+json" => {
                return Self {
                    media: Some(ResponseMedia::GraphqlResponseJson),
                    prefers_html: false,
                };
            }
            _ => {}
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Self::DEFAULT;
        };
        Self::negotiate(text)
    }

    /// What a request without `Accept` gets.
    const DEFAULT: Self = Self {
        media: Some(ResponseMedia::Json),
        prefers_html: false,
    };

    fn negotiate(accept: &str) -> Self {
        let ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(MediaRange::parse).collect();
        if ranges.is_empty() {
            // Nothing parseable: treat as no header rather than refuse.
            return Self::DEFAULT;
        }
        let graphql = preference(&ranges, "application", "graphql-response+json");
        let json = preference(&ranges, "application", "json");
        let html = preference(&ranges, "text", "html");
        let media = match (graphql, json) {
            (None, None) => None,
            (Some(graphql), Some(json)) => Some(
                // Equal preference: the specification's type when the client
                // named it, plain JSON when only a wildcard matched both.
                if graphql.q > json.q || (graphql.q == json.q && graphql.is_exact) {
                    ResponseMedia::GraphqlResponseJson
                } else {
                    ResponseMedia::Json
                },
            ),
            (Some(_), None) => Some(ResponseMedia::GraphqlResponseJson),
            (None, Some(_)) => Some(ResponseMedia::Json),
        };
        let best_json_q = graphql.max(json).map_or(0, |m| m.q);
        let prefers_html = html.is_some_and(|html| html.is_exact && html.q >= best_json_q);
        Self {
            media,
            prefers_html,
        }
    }
}

/// One media range of an `Accept` header: `type/subtype;q=0.5`.
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    /// Quality in thousandths (RFC 9110: at most three decimals).
    q: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(item: &'a str) -> Option<Self> {
        let mut parts = item.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut q = 1000;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = parse_q(value.trim())?;
            }
        }
        Some(Self { kind, subtype, q })
    }

    /// How specifically this range matches `kind/subtype`: 2 exact, 1
    /// `kind/*`, 0 `*/*`; `None` if it does not match.
    fn specificity(&self, kind: &str, subtype: &str) -> Option<u8> {
        if self.kind == "*" {
            return (self.subtype == "*").then_some(0);
        }
        if !self.kind.eq_ignore_ascii_case(kind) {
            return None;
        }
        if self.subtype == "*" {
            return Some(1);
        }
        self.subtype.eq_ignore_ascii_case(subtype).then_some(2)
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = match whole {
        "0" => {
            let padded = format!("{fraction:0<3}");
            padded.parse::<u16>().ok()?
        }
        "1" if fraction.bytes().all(|b| b == b'0') => 1000,
        _ => return None,
    };
    Some(thousandths)
}

/// How much the client wants one media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Preference {
    q: u16,
    /// Whether a range naming the type itself (not a wildcard) decided it.
    is_exact: bool,
}

/// The quality the most specific matching range gives `kind/subtype`
/// (RFC 9110 12.5.1); `None` when no range matches or it has `q=0`.
fn preference(ranges: &[MediaRange<'_>], kind: &str, subtype: &str) -> Option<Preference> {
    let (specificity, q) = ranges
        .iter()
        .filter_map(|range| Some((range.specificity(kind, subtype)?, range.q)))
        // Most specific first; among equally specific ranges, the first one.
        .fold(
            None,
            |best: Option<(u8, u16)>, (specificity, q)| match best {
                Some((best_specificity, _)) if best_specificity >= specificity => best,
                _ => Some((specificity, q)),
            },
        )?;
    (q > 0).then_some(Preference {
        q,
        is_exact: specificity == 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(accept: Option<&str>) -> Option<ResponseMedia> {
        let header = accept.map(|a| HeaderValue::from_str(a).expect("header"));
        Accepted::from_header(header.as_ref()).media
    }

    fn html(accept: &str) -> bool {
        Accepted::from_header(Some(&HeaderValue::from_str(accept).expect("header"))).prefers_html
    }

    #[test]
    fn no_accept_or_wildcards_get_plain_json() {
        assert_eq!(media(None), Some(ResponseMedia::Json));
        assert_eq!(media(Some("*/*")), Some(ResponseMedia::Json));
        assert_eq!(media(Some("application/*")), Some(ResponseMedia::Json));
        assert_eq!(media(Some("application/json")), Some(ResponseMedia::Json));
        assert_eq!(
            media(Some("application/json; charset=utf-8")),
            Some(ResponseMedia::Json)
        );
    }

    #[test]
    fn the_specification_type_is_sent_when_asked_for() {
        let graphql = Some(ResponseMedia::GraphqlResponseJson);
        assert_eq!(media(Some("application/graphql-response+json")), graphql);
        // What the specification tells clients to send.
        assert_eq!(
            media(Some(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            graphql
        );
        assert_eq!(
            media(Some("application/json, application/graphql-response+json")),
            graphql,
            "equal q: the named specification type wins"
        );
        assert_eq!(
            media(Some("Application/GraphQL-Response+JSON;charset=utf-8")),
            graphql,
            "case-insensitive, parameters ignored"
        );
    }

    #[test]
    fn q_values_are_respected() {
        assert_eq!(
            media(Some(
                "application/graphql-response+json;q=0.5, application/json"
            )),
            Some(ResponseMedia::Json)
        );
        assert_eq!(
            media(Some("application/graphql-response+json;q=0.5, */*;q=0.9")),
            Some(ResponseMedia::Json),
            "the wildcard gives JSON a higher q"
        );
        assert_eq!(
            media(Some(
                "application/json;q=0, application/graphql-response+json;q=0.1"
            )),
            Some(ResponseMedia::GraphqlResponseJson)
        );
        assert_eq!(
            media(Some("*/*, application/json;q=0")),
            Some(ResponseMedia::GraphqlResponseJson),
            "JSON refused by name; the wildcard still allows the other"
        );
    }

    #[test]
    fn unacceptable_types_are_refused() {
        assert_eq!(media(Some("text/html")), None);
        assert_eq!(media(Some("application/xml, text/plain;q=0.5")), None);
        assert_eq!(media(Some("application/json;q=0")), None);
        assert_eq!(
            media(Some(
                "application/json;q=0, application/graphql-response+json;q=0"
            )),
            None
        );
    }

    #[test]
    fn malformed_headers_are_read_leniently() {
        assert_eq!(media(Some("garbage")), Some(ResponseMedia::Json));
        assert_eq!(
            media(Some("application/json;q=2, text/html")),
            None,
            "a range with a bad q-value is dropped"
        );
    }

    #[test]
    fn only_browsers_naming_html_prefer_the_page() {
        assert!(html(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!html("*/*"));
        assert!(!html("application/json"));
        assert!(!html("application/json, text/html;q=0.5"));
    }

    #[test]
    fn q_values_parse_to_thousandths() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("x"), None);
    }
}
