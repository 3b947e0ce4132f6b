//! HTTP handlers, one module (and one `router()`) per area.

pub mod auth;
pub mod meta;
pub mod users;
pub mod wellknown;
