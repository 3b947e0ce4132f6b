//! HTTP handlers, one module (and one `router()`) per area.

pub mod admin;
pub mod auth;
pub mod email;
pub mod meta;
pub mod users;
pub mod wellknown;
