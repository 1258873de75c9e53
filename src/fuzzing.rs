//! The parsers of client and remote input that are private to their
//! modules, re-exported for the fuzz targets in `fuzz/` (README
//! "Fuzzing"). Nothing here is API: the items are the very functions the
//! server calls, unchanged, so a crash found through this module is a
//! crash of the server.

pub use crate::api::access::valid_authority;
pub use crate::api::handlers::blobs::{parse_range, ByteRange};
pub use crate::api::handlers::uploads::parse_content_range;
pub use crate::api::mgmt::{parse as parse_mgmt_path, Endpoint as MgmtEndpoint};
pub use crate::upstream::auth::{parse_challenge, Challenge};
