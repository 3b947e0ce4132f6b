//! Latchkey's custom resource types (`OAuthClient`, `SigningKey`).
//!
//! This crate will hold the kube `CustomResource` definitions from which the CRD YAML is
//! generated. It is empty until the operator work lands; it compiles so the workspace
//! layout is the final one from the start.
#![forbid(unsafe_code)]
