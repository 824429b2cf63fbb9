//! Cache administration over GraphQL: `cacheStats`, `clearCache(pattern)`,
//! `clearAllCache`. Every field requires `Authorization: Bearer
//! <ADMIN_TOKEN>` ([`AdminGuard`], constant-time comparison); each action is
//! logged with the client's address, what it asked and what happened.

use std::net::SocketAddr;

use async_graphql::{Context, ErrorExtensions, Guard, Object, Result, ResultExt, SimpleObject};
use subtle::ConstantTimeEq;

use crate::cache::admin::{CacheReport, ClearOutcome};
use crate::config::Secret;
use crate::error::AppError;
use crate::state::AppState;

/// The caller's credentials and address, put into each request's data by
/// the HTTP handler.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// What the `Authorization` header held.
    pub bearer: Bearer,
    /// The TCP peer, for the audit log.
    pub client: Option<SocketAddr>,
}

/// The `Authorization` header, classified.
#[derive(Clone, PartialEq, Eq)]
pub enum Bearer {
    /// No header.
    Missing,
    /// A header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token.
    Token(String),
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Malformed => f.write_str("Malformed"),
            Self::Token(_) => f.write_str("Token([redacted])"),
        }
    }
}

impl Bearer {
    /// Classifies an `Authorization` header value.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return Self::Missing;
        };
        let Ok(text) = std::str::from_utf8(value) else {
            return Self::Malformed;
        };
        match text.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Self::Token(token.trim().to_owned())
            }
            _ => Self::Malformed,
        }
    }
}

impl Bearer {
    /// Whether this is a bearer token equal to `expected`. Constant time
    /// for equal lengths; a length mismatch only reveals the length, which
    /// a 16+ character token survives.
    pub fn is_token(&self, expected: &Secret) -> bool {
        match self {
            Self::Token(token) => bool::from(expected.expose().as_bytes().ct_eq(token.as_bytes())),
            Self::Missing | Self::Malformed => false,
        }
    }
}

/// Lets a field run only for a caller holding the admin token.
pub struct AdminGuard;

impl Guard for AdminGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let state = ctx.data::<AppState>()?;
        let credentials = ctx.data_opt::<Credentials>();
        let bearer = credentials.map_or(&Bearer::Missing, |c| &c.bearer);
        let verdict = match (&state.config.admin.token, bearer) {
            (None, _) => Err(AppError::Forbidden(
                "admin operations are disabled: set ADMIN_TOKEN (16+ characters) on the server and send it as `Authorization: Bearer <token>`",
            )),
            (Some(_), Bearer::Missing) => Err(AppError::Unauthenticated(
                "admin operations need an `Authorization: Bearer <ADMIN_TOKEN>` header",
            )),
            (Some(_), Bearer::Malformed) => Err(AppError::Unauthenticated(
                "the Authorization header must be `Bearer <ADMIN_TOKEN>`",
            )),
            (Some(expected), Bearer::Token(_)) => {
                if bearer.is_token(expected) {
                    Ok(())
                } else {
                    Err(AppError::Forbidden("the admin token is wrong"))
                }
            }
        };
        if let Err(err) = &verdict {
            tracing::warn!(
                client = %client_of(ctx),
                field = %ctx.field().name(),
                code = err.code(),
                "Admin access refused"
            );
        }
        verdict.map_err(|err| err.extend())
    }
}

fn client_of(ctx: &Context<'_>) -> String {
    ctx.data_opt::<Credentials>()
        .and_then(|c| c.client)
        .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
}

/// Admin queries.
#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Redis server facts, our namespace's footprint and per-resolver cache
    /// counters. Admin only. When Redis is down, `connected` is false and the
    /// Redis fields are null; the counters are still there.
    #[graphql(guard = "AdminGuard")]
    async fn cache_stats(&self, ctx: &Context<'_>) -> Result<CacheStats> {
        let state = ctx.data::<AppState>()?;
        Ok(CacheStats::from(state.cache.report().await))
    }
}

/// Admin mutations.
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Deletes cached entries matching `pattern`, relative to the service's
    /// namespace and version: `"popular:*"` deletes `anigo:v4:popular:*`.
    /// Uses SCAN + UNLINK in batches, never KEYS. An empty pattern, or one
    /// that could reach outside the namespace, is refused. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn clear_cache(&self, ctx: &Context<'_>, pattern: String) -> Result<ClearResult> {
        let state = ctx.data::<AppState>()?;
        let outcome = state.cache.clear_pattern(&pattern).await.extend()?;
        tracing::info!(
            client = %client_of(ctx),
            pattern = %pattern,
            deleted = outcome.deleted,
            took_ms = outcome.took.as_millis() as u64,
            "Cache cleared by pattern"
        );
        Ok(outcome.into())
    }

    /// Deletes every key of the service's namespace (all versions) and
    /// nothing else: never FLUSHDB. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn clear_all_cache(&self, ctx: &Context<'_>) -> Result<ClearResult> {
        let state = ctx.data::<AppState>()?;
        let outcome = state.cache.clear_all().await.extend()?;
        tracing::info!(
            client = %client_of(ctx),
            namespace = state.cache.keys().namespace(),
            deleted = outcome.deleted,
            took_ms = outcome.took.as_millis() as u64,
            "Cache namespace cleared"
        );
        Ok(outcome.into())
    }
}

/// What a clear did.
#[derive(SimpleObject)]
pub struct ClearResult {
    /// Keys deleted.
    pub deleted: u64,
    /// Milliseconds the clear took.
    pub took_ms: u64,
}

impl From<ClearOutcome> for ClearResult {
    fn from(outcome: ClearOutcome) -> Self {
        Self {
            deleted: outcome.deleted,
            took_ms: outcome.took.as_millis() as u64,
        }
    }
}

/// The cache as the service sees it.
#[derive(SimpleObject)]
pub struct CacheStats {
    /// Whether Redis answered.
    pub connected: bool,
    /// `redis_version`.
    pub redis_version: Option<String>,
    /// Keys in the Redis database (DBSIZE), ours and others'.
    pub keys: Option<u64>,
    /// Keys under our namespace, all versions (bounded SCAN; see
    /// `keyCountsAreExact`).
    pub namespace_keys: Option<u64>,
    /// True when the SCAN behind the key and byte counts saw every key of
    /// the namespace; false when it stopped at its limit (20,000 keys) and
    /// the counts are lower bounds.
    pub key_counts_are_exact: bool,
    /// `used_memory` in bytes.
    pub memory_used: Option<u64>,
    /// `used_memory_human`, e.g. "2.5M".
    pub memory_used_human: Option<String>,
    /// `maxmemory` in bytes (0: no limit).
    pub max_memory: Option<u64>,
    /// `maxmemory_policy`.
    pub max_memory_policy: Option<String>,
    /// `evicted_keys`: keys Redis removed under memory pressure.
    pub evicted_keys: Option<u64>,
    /// `keyspace_hits`, server-wide.
    pub keyspace_hits: Option<u64>,
    /// `keyspace_misses`, server-wide.
    pub keyspace_misses: Option<u64>,
    /// keyspaceHits / (keyspaceHits + keyspaceMisses), server-wide.
    pub hit_rate: Option<f64>,
    /// Per cached resolver.
    pub resolvers: Vec<ResolverCacheStats>,
    /// The response fast path of the instance that answered.
    pub responses: ResponseCacheStats,
}

/// Whole kept responses on the instance that answered (the fast path for
/// repeated public queries).
#[derive(SimpleObject)]
pub struct ResponseCacheStats {
    /// Whether responses are kept (`CACHE_RESPONSES`).
    pub enabled: bool,
    /// Requests answered from a kept response since this process started.
    pub hits: u64,
    /// Lookups that found no current response (the request executed).
    pub misses: u64,
    /// Responses kept after execution.
    pub stored: u64,
    /// Lookups skipped because Redis or the invalidation subscription was
    /// not trusted.
    pub bypasses: u64,
    /// Responses held now.
    pub entries: u64,
    /// Bytes they take.
    pub bytes: u64,
}

/// One cached resolver.
#[derive(SimpleObject)]
pub struct ResolverCacheStats {
    /// GraphQL field name.
    pub name: &'static str,
    /// Key prefix after `{namespace}:{version}:`.
    pub prefix: &'static str,
    /// TTL in seconds (0: caching disabled).
    pub ttl_seconds: u64,
    /// Reads served from the cache since this process started.
    pub hits: u64,
    /// Reads not found in the cache since this process started.
    pub misses: u64,
    /// Redis failures on this resolver's reads and write-backs.
    pub errors: u64,
    /// Reads that skipped the cache (Redis unavailable or caching off).
    pub bypasses: u64,
    /// Reads that skipped every tier at the client's request
    /// (`Cache-Control: no-cache`) and loaded from the database.
    pub refreshes: u64,
    /// Database loads (for anime, one per anime loaded).
    pub loads: u64,
    /// List reads whose ids were cached while some of their anime were
    /// not (only those loaded); also counted in `hits`.
    pub partials: u64,
    /// Loaded values not stored because admission refused them (a search
    /// seen once, or the search budget spent).
    pub not_admitted: u64,
    /// hits / (hits + misses) since this process started.
    pub hit_rate: f64,
    /// Current keys under this prefix (null when Redis is down).
    pub keys: Option<u64>,
    /// Bytes of their values (STRLEN sum; null when Redis is down).
    pub bytes: Option<u64>,
}

impl From<CacheReport> for CacheStats {
    fn from(report: CacheReport) -> Self {
        let server = report.server.as_ref();
        Self {
            connected: server.is_some(),
            redis_version: server.map(|s| s.version.clone()),
            keys: server.map(|s| s.keys),
            namespace_keys: report.namespace_keys,
            key_counts_are_exact: report.is_exact,
            memory_used: server.map(|s| s.used_memory),
            memory_used_human: server.map(|s| s.used_memory_human.clone()),
            max_memory: server.map(|s| s.max_memory),
            max_memory_policy: server.map(|s| s.max_memory_policy.clone()),
            evicted_keys: server.map(|s| s.evicted_keys),
            keyspace_hits: server.map(|s| s.keyspace_hits),
            keyspace_misses: server.map(|s| s.keyspace_misses),
            hit_rate: server.map(|s| s.hit_rate()),
            resolvers: report
                .resolvers
                .into_iter()
                .map(|r| ResolverCacheStats {
                    name: r.resolver.name(),
                    prefix: r.resolver.prefix(),
                    ttl_seconds: r.ttl.as_secs(),
                    hits: r.counters.hits,
                    misses: r.counters.misses,
                    errors: r.counters.errors,
                    bypasses: r.counters.bypasses,
                    refreshes: r.counters.refreshes,
                    loads: r.counters.loads,
                    partials: r.counters.partials,
                    not_admitted: r.counters.not_admitted,
                    hit_rate: r.counters.hit_rate(),
                    keys: r.keys,
                    bytes: r.bytes,
                })
                .collect(),
            responses: ResponseCacheStats {
                enabled: report.responses.is_enabled,
                hits: report.responses.counters.hits,
                misses: report.responses.counters.misses,
                stored: report.responses.counters.stored,
                bypasses: report.responses.counters.bypasses,
                entries: report.responses.entries,
                bytes: report.responses.bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_classified() {
        assert_eq!(Bearer::from_header(None), Bearer::Missing);
        assert_eq!(
            Bearer::from_header(Some(b"Bearer abc")),
            Bearer::Token("abc".into())
        );
        assert_eq!(
            Bearer::from_header(Some(b"bearer  abc ")),
            Bearer::Token("abc".into())
        );
        assert_eq!(Bearer::from_header(Some(b"Basic abc")), Bearer::Malformed);
        assert_eq!(Bearer::from_header(Some(b"Bearer ")), Bearer::Malformed);
        assert_eq!(Bearer::from_header(Some(b"abc")), Bearer::Malformed);
        assert_eq!(Bearer::from_header(Some(&[0xff, 0xfe])), Bearer::Malformed);
        assert!(!format!("{:?}", Bearer::Token("secret".into())).contains("secret"));
    }
}
