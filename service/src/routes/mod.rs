//! HTTP handlers, one module (and one `router()`) per area.

pub mod admin;
pub mod auth;
pub mod email;
pub mod meta;
pub mod users;
pub mod wellknown;

/// Every route template the service serves (see [`latchkey_domain::limits::ROUTES`],
/// where the rate-limit policy and the configuration's check read it).
pub use latchkey_domain::limits::ROUTES as TEMPLATES;
