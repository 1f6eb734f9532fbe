//! HTTPS to the API with a custom CA: a local TLS endpoint (tokio-rustls, certificates made with
//! `openssl`) in front of the simulator. With `api.ca_file` naming the CA the connector reads
//! everything (audited end to end against the real broker); without it, or with another CA, it
//! fails closed with an error naming the certificate problem and reads nothing.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::harness::{sim_config, TestEnv};
use tanma_connector::commands::check::probe;
use tanma_connector::pipeline::Exit;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (the TLS tests need the openssl CLI)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and, if `server`, a server certificate for 127.0.0.1 signed by it.
fn make_ca(dir: &Path, name: &str, server: bool) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    if server {
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
    }
}

/// Terminates TLS on a free port and forwards each connection to `backend` in plain TCP.
async fn tls_front(dir: &Path, backend: String) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_custom_ca_works_and_fails_closed_without_it() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_ca(certs.path(), "good", true);
    make_ca(certs.path(), "other", false);
    let good_ca = certs.path().join("good-ca.pem");
    let other_ca = certs.path().join("other-ca.pem");

    let mut env = TestEnv::new(sim_config(61, 400), |_| {}).await;
    let backend = env
        .sim
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let port = tls_front(certs.path(), backend).await;
    env.cfg.api.base_url = format!("https://127.0.0.1:{port}");
    env.cfg.api.max_attempts = 2;

    // Without the CA, and with another CA: the API probe fails, naming the certificate.
    for ca in [None, Some(other_ca.clone())] {
        let mut cfg = env.cfg.clone();
        cfg.api.ca_file = ca.clone();
        let problems = probe(&cfg).await;
        let api: Vec<&String> = problems.iter().filter(|p| p.starts_with("api")).collect();
        assert_eq!(api.len(), 1, "ca {ca:?}: {problems:?}");
        let text = api[0].to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("issuer"),
            "ca {ca:?}: {text}"
        );
    }
    // No request reached the simulator through the refused handshakes.
    let served: u64 = env.sim.control().stats().requests.values().sum();
    assert_eq!(
        served, 0,
        "a request went through an untrusted TLS connection"
    );

    // A CA file that is not a certificate: a config error naming api.ca_file.
    let junk = certs.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let mut cfg = env.cfg.clone();
    cfg.api.ca_file = Some(junk);
    let problems = probe(&cfg).await;
    assert!(
        problems.iter().any(|p| p.contains("api.ca_file")),
        "{problems:?}"
    );

    // With the CA: a full backfill over HTTPS, audited.
    env.cfg.api.ca_file = Some(good_ca);
    assert!(probe(&env.cfg).await.is_empty());
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let audit = env.wait_clean(Duration::from_secs(60)).await;
    assert_eq!(audit.created as usize, audit.truth_customers);
}
