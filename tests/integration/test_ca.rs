//! A certificate authority for tests: its certificate in `dir/ca.pem`
//! (given to clients as SSL_CERT_FILE, which the system-roots loader
//! honours) and server certificates it signs.

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData, date_time_ymd,
};

/// A CA, written to `dir/ca.pem`, and a function making server
/// certificates it signs.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's SubjectPublicKeyInfo (for DANE-TA records).
    pub spki: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "yubin test CA");
        let cert = params.self_signed(&key).unwrap();
        fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        TestCa {
            spki: key.subject_public_key_info(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, valid in `years`; returns the
    /// `[tls]` table naming its files.
    pub fn server(&self, dir: &Path, tag: &str, names: &[&str], years: (i32, i32)) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = date_time_ymd(years.0, 1, 1);
        params.not_after = date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{tag}.pem"));
        let key_path = dir.join(format!("{tag}.key"));
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        )
    }
}
