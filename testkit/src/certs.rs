//! Certificates for a throwaway control plane, generated in-process with rcgen.
//!
//! ECDSA P-256 everywhere: generation takes microseconds (RSA would take most of a second
//! per key) and both Go's TLS and kube-apiserver's service-account signer accept it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Result, io};

/// Paths of the PEM files written by [`write_all`].
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca_cert: PathBuf,
    /// kube-apiserver's serving certificate (SAN 127.0.0.1 and localhost) and key.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The admin client: `O=system:masters`, so cluster-admin under RBAC.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The service-account token signing key (PKCS#8) and its public half (SPKI).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// Generates a CA, the serving and admin certificates and the service-account key into
/// `dir`.
pub fn write_all(dir: &Path) -> Result<CertPaths> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("latchkey-test-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin.distinguished_name = name("latchkey-admin", Some("system:masters"));
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer)?;

    let sa_key = KeyPair::generate()?;

    let paths = CertPaths {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    let files = [
        (&paths.ca_cert, ca_cert.pem()),
        (&paths.serving_cert, serving_cert.pem()),
        (&paths.serving_key, serving_key.serialize_pem()),
        (&paths.admin_cert, admin_cert.pem()),
        (&paths.admin_key, admin_key.serialize_pem()),
        (&paths.sa_key, sa_key.serialize_pem()),
        (&paths.sa_pub, sa_key.public_key_pem()),
    ];
    for (path, pem) in files {
        std::fs::write(path, pem).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(paths)
}

/// A new ServiceAccount signing key pair in `dir` (`<stem>.key`, `<stem>.pub`), for an
/// API server restarted with a rotated key; returns (private, public) paths.
pub fn write_service_account_key(dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let private = dir.join(format!("{stem}.key"));
    let public = dir.join(format!("{stem}.pub"));
    for (path, pem) in [
        (&private, key.serialize_pem()),
        (&public, key.public_key_pem()),
    ] {
        std::fs::write(path, pem).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok((private, public))
}
