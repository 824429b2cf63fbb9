//! The integration suite: one binary, so the crate links once.
//!
//! Every test talks to the real router over HTTP, with a real PostgreSQL or
//! SQLite database and a real `redis-server`, all started by `support`.

mod common;
mod support;

mod admin;
mod api;
mod bad_input;
mod batch_load;
mod browser;
mod cache;
mod cache_directives;
mod catalogue;
mod catalogue_lists;
mod catalogue_relations;
mod catalogue_search;
mod contract;
mod db;
mod deploy;
mod dictionary;
mod entities;
mod fast_path;
mod faults;
mod field_storm;
mod fuzz;
mod health;
mod hostile;
mod http;
mod lifecycle;
mod limits;
mod memory;
mod random;
mod taxonomy_writes;
mod topologies;
mod two_tier;
