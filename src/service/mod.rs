//! Use cases, independent of GraphQL: what the resolvers ask for, in domain
//! terms. Caching joins here (cache-aside around the repository), so it can
//! be tested and benchmarked without HTTP.

pub mod anime;

pub use anime::{AnimeService, PageRequest, PageResult};
