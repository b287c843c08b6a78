//! `daas kubeconfig --server URL --out PATH`: verify, then write a kubeconfig
//! that pins the attested certificate.
//!
//! The cluster's `certificate-authority-data` is the attested server
//! certificate itself. The server's certificate is self-signed and sent
//! alone, so every TLS stack takes it as a trust anchor: Go's `crypto/x509`,
//! OpenSSL (Python, Node, curl), Java's PKIX and rustls. A client then
//! connects only to a server presenting exactly that certificate, and TLS
//! makes the server prove it holds that certificate's key: the very key the
//! attestation document binds. Pinning an issuing CA instead would let any
//! other certificate of that CA through. When the server's key changes (a
//! new enclave), the kubeconfig stops working until `daas kubeconfig` runs
//! again and re-verifies.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use clap::Args;
use rustls_pki_types::CertificateDer;

use crate::attested::{self, ServerUrl, TrustArgs};

/// Arguments of `daas kubeconfig`.
#[derive(Debug, Args)]
pub(crate) struct KubeconfigArgs {
    /// The server, `https://HOST[:PORT]`.
    #[arg(long, value_name = "URL")]
    server: ServerUrl,
    #[command(flatten)]
    trust: TrustArgs,
    /// Where to write the kubeconfig (mode 0600, replaced atomically).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Bearer token for the user.
    #[arg(long, env = "DAAS_TOKEN", value_name = "TOKEN", conflicts_with_all = ["client_cert", "client_key"])]
    token: Option<String>,
    /// Client certificate (PEM) for the user.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client key (PEM) for the user.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Name of the cluster, user and context in the file.
    #[arg(long, default_value = "k3s-daas")]
    context: String,
}

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// No credentials (anonymous).
    None,
    /// A bearer token.
    Token(String),
    /// A client certificate and its key, PEM.
    ClientCertificate {
        /// Certificate PEM.
        cert_pem: String,
        /// Key PEM.
        key_pem: String,
    },
}

impl Credentials {
    /// Reads a client certificate and key.
    pub(crate) fn client_certificate(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(Self::ClientCertificate {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

/// The kubeconfig text: one cluster pinned to `certificate`, one user, one
/// context, made current.
pub(crate) fn render(
    name: &str,
    server: &ServerUrl,
    certificate: &CertificateDer<'_>,
    credentials: &Credentials,
) -> String {
    render_with_server_name(name, server, certificate, credentials, None)
}

/// [`render`], with the TLS server name kubectl checks the pinned certificate against when it
/// is not the server URL's host (`tls-server-name`).
pub(crate) fn render_with_server_name(
    name: &str,
    server: &ServerUrl,
    certificate: &CertificateDer<'_>,
    credentials: &Credentials,
    tls_server_name: Option<&str>,
) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pinned = pem::encode(&pem::Pem::new("CERTIFICATE", certificate.to_vec()));
    let user = match credentials {
        Credentials::None => "  user: {}\n".to_owned(),
        // A JSON string is a valid YAML double-quoted scalar, whatever the token holds.
        Credentials::Token(token) => format!(
            "  user:\n    token: {}\n",
            serde_json::Value::from(token.as_str())
        ),
        Credentials::ClientCertificate { cert_pem, key_pem } => format!(
            "  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem.as_bytes()),
            b64(key_pem.as_bytes())
        ),
    };
    let server_name = tls_server_name
        .map(|n| format!("    tls-server-name: {}\n", serde_json::Value::from(n)))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
# The cluster pins the attested server certificate (verified by daas at write time).
clusters:
- name: {name}
  cluster:
    server: {url}
    certificate-authority-data: {ca}
{server_name}users:
- name: {name}
{user}contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
current-context: {name}
",
        url = server.url,
        ca = b64(pinned.as_bytes()),
    )
}

/// Writes `contents` to `path` with mode 0600, atomically (temp file and rename).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Runs `daas kubeconfig`.
pub(crate) fn run(args: &KubeconfigArgs) -> anyhow::Result<()> {
    let credentials = match (&args.token, &args.client_cert, &args.client_key) {
        (Some(token), _, _) => Credentials::Token(token.clone()),
        (None, Some(cert), Some(key)) => Credentials::client_certificate(cert, key)?,
        _ => Credentials::None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attested = match runtime.block_on(attested::attest(&args.server, &args.trust)) {
        Ok(a) => a,
        Err(report) => {
            print!("{report}");
            anyhow::bail!(
                "{} is NOT verified, no kubeconfig written: {}",
                report.server,
                report.error.as_deref().unwrap_or("unknown failure")
            );
        }
    };
    print!("{}", attested.report);
    let text = render(
        &args.context,
        &args.server,
        &attested.certificate,
        &credentials,
    );
    write_private(&args.out, &text)?;
    println!(
        "wrote {} (pinned to the attested certificate)",
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_quoted() {
        let server: ServerUrl = "https://127.0.0.1:6443"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let cert = CertificateDer::from(vec![1u8, 2, 3]);
        let text = render("c", &server, &cert, &Credentials::Token("a: b\"#".into()));
        assert!(text.contains(r##"    token: "a: b\"#""##), "{text}");
        assert!(text.contains("current-context: c"), "{text}");
    }
}
