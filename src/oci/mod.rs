//! OCI vocabulary: digests, repository names, tags, references, manifest
//! media types and the distribution-spec error codes.
//!
//! This module owns parsing-at-the-edge: every value a client or an upstream
//! controls is turned into one of these newtypes exactly once, and the rest of
//! wharf never re-validates it. It must never import anything else from wharf
//! and never touch the network or the disk.

mod digest;
mod error;
pub mod manifest;
mod name;
mod platform;

pub use digest::{Algorithm, Digest, DigestError, Hasher, ResumableSha256};
pub use error::{Descriptor as ErrorDescriptor, ErrorCode};
pub use name::{NameError, Reference, RepoName, Tag};
pub use platform::Platform;
