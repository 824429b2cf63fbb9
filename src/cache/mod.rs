//! The cache layer. In this first stage it owns the Redis connection only:
//! connecting without blocking start-up, reporting server stats, and health
//! checks. Per-resolver caching builds on [`redis::RedisStore`].

pub mod redis;

pub use self::redis::{RedisStatus, RedisStore};
