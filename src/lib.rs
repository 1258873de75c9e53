//! wharf: a pull-through caching proxy and private OCI registry.
//!
//! Module map (dependencies point one way, top to bottom):
//! - [`oci`]: digests, names, manifests, error codes (imports nothing of ours)
//! - [`config`]: raw TOML → validated [`config::Config`]
//! - [`store`]: the content-addressed store (facets over a backend)
//! - [`upstream`], [`secrets`]: remote registries and their credentials
//! - [`proxy`]: the pull-through cache (policy, one fetch per blob, eviction)
//! - [`scan`]: Harbor's Pluggable Scanner API (adapter client, reports)
//! - [`auth`]: who a request is and what it may do
//! - [`registry`]: the domain layer (namespaces, projects, quotas, pushes)
//! - [`api`]: HTTP routes, handlers, the one error mapping
//! - [`ui`]: the web dashboard at `/ui` (pages over the same registry calls)
//! - [`app`]: wires the parts, serves (TLS via [`tls`]), drains on shutdown
//! - [`telemetry`], [`metrics`]: logs with request ids, `/metrics`
//! - [`timefmt`]: RFC 3339 times in JSON (a leaf, imports nothing of ours)
//! - `fuzzing`: private parsers re-exported for the fuzz targets (`fuzz/`)
// No `unsafe` anywhere but `store::fs::mapped` (memory-mapped blob
// chunks) and `app::alloc` (one `mallopt` call), each block with its
// safety argument, allowed locally.
#![deny(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod notify;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod scan;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod tls;
pub mod ui;
pub mod upstream;
