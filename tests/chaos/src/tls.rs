//! TLS for the chaos harness: a CA made for the run and one certificate every service serves
//! (`Harness::start_with(…, true)`).

use std::path::{Path, PathBuf};

/// The certificates of a harness started with TLS, and how its clients dial the services.
pub(crate) struct HarnessTls {
    /// `(certificate, key, CA)` paths every service is given.
    files: (PathBuf, PathBuf, PathBuf),
    pub(crate) client: orgplane_platform::tls::client::ClientTls,
}

impl HarnessTls {
    /// A CA and one certificate for `127.0.0.1` (every service serves it), written into `dir`.
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Self> {
        use orgplane_platform::tls::testing::TestCa;
        let ca = TestCa::new("orgplane chaos CA");
        let ca_path = ca.write(dir, "ca");
        let (cert, key) = ca.issue(&["127.0.0.1"]).write(dir, "tls");
        let settings = orgplane_platform::tls::TlsSettings {
            ca: Some(ca_path.clone()),
            ..Default::default()
        };
        let client = orgplane_platform::tls::client::ClientTls::new(&settings, None)?;
        Ok(Self {
            files: (cert, key, ca_path),
            client,
        })
    }

    /// The TLS options as command-line flags.
    pub(crate) fn args(&self) -> Vec<String> {
        let (cert, key, ca) = &self.files;
        vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--tls-ca".into(),
            ca.display().to_string(),
        ]
    }

    /// The same as environment variables.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let (cert, key, ca) = &self.files;
        vec![
            ("ORGPLANE_TLS_CERT".into(), cert.display().to_string()),
            ("ORGPLANE_TLS_KEY".into(), key.display().to_string()),
            ("ORGPLANE_TLS_CA".into(), ca.display().to_string()),
        ]
    }
}
