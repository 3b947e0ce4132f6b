//! The operator's one error type, and what each variant counts as in metrics.
//!
//! Its own module so that the other modules import it from here and none depends on the
//! crate root, which runs them all; the root re-exports it for `main` and other callers.

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("database: {0}")]
    Store(#[from] latchkey_store::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(
        "cannot list {0} ({1}): is the CRD installed (kubectl apply -f charts/latchkey/crds/) and may this account list them?"
    )]
    CrdUnavailable(&'static str, #[source] kube::Error),
    #[error("leadership lost: another replica reconciles now")]
    LostLeadership,
    #[error("kubernetes client configuration: {0}")]
    KubeConfig(#[from] kube::config::InferConfigError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "missing_field",
            Self::Kube(_) | Self::CrdUnavailable(..) | Self::KubeConfig(_) => "kubernetes",
            Self::Store(_) => "database",
            Self::Listen { .. } => "listen",
            Self::LostLeadership => "leader_election",
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
        }
    }
}
