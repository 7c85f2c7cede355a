//! The trivial responder: a POP3 server that answers from memory and checks
//! nothing. Through the same client it shows the client's and the
//! loopback's ceiling, which no real server can beat.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::data;

/// The mailbox the responder serves, already encoded for the wire.
struct Mailbox {
    /// Each message as sent after `+OK`: stuffed, with the final `.` line.
    encoded: Vec<Vec<u8>>,
    sizes: Vec<u64>,
}

fn mailbox(mode: &str) -> Result<Mailbox> {
    let messages: Vec<Vec<u8>> = match mode {
        "login" => (0..10).map(|n| data::message(n, 1000)).collect(),
        "retrieval" => (0..500).map(|n| data::message(n, 10_000)).collect(),
        "big" => vec![data::message(0, 50 << 20)],
        other => anyhow::bail!("--mode {other}: login, retrieval or big"),
    };
    let mut encoded = Vec::new();
    let mut sizes = Vec::new();
    for m in &messages {
        let wire = data::wire(m);
        sizes.push(wire.len() as u64);
        let mut out = Vec::with_capacity(wire.len() + wire.len() / 30);
        for line in wire.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b".\r\n");
        encoded.push(out);
    }
    Ok(Mailbox { encoded, sizes })
}

/// Serves until killed.
pub fn run(port: u16, tls_port: u16, mode: &str, cert: &Path, key: &Path) -> Result<()> {
    let mailbox = Arc::new(mailbox(mode)?);
    let certs =
        rustls::pki_types::CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let plain = TcpListener::bind(("127.0.0.1", port))
            .await
            .context("bind")?;
        let secure = TcpListener::bind(("127.0.0.1", tls_port))
            .await
            .context("bind")?;
        let m = mailbox.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = plain.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(tcp, m.clone()));
            }
        });
        while let Ok((tcp, _)) = secure.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let m = mailbox.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, m).await;
                }
            });
        }
        Ok(())
    })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, mailbox: Arc<Mailbox>) {
    let mut stream = BufReader::new(stream);
    let greeting = stream.get_mut();
    if greeting.write_all(b"+OK ready\r\n").await.is_err() || greeting.flush().await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let mut reply: Vec<u8> = Vec::new();
        let total: u64 = mailbox.sizes.iter().sum();
        if command.starts_with("STAT") {
            reply.extend_from_slice(format!("+OK {} {total}\r\n", mailbox.sizes.len()).as_bytes());
        } else if command.starts_with("UIDL") || command.starts_with("LIST") {
            reply.extend_from_slice(b"+OK\r\n");
            for (i, size) in mailbox.sizes.iter().enumerate() {
                if command.starts_with("UIDL") {
                    reply.extend_from_slice(format!("{} m{i}\r\n", i + 1).as_bytes());
                } else {
                    reply.extend_from_slice(format!("{} {size}\r\n", i + 1).as_bytes());
                }
            }
            reply.extend_from_slice(b".\r\n");
        } else if let Some(n) = command
            .strip_prefix("RETR ")
            .and_then(|n| n.parse::<usize>().ok())
        {
            if let Some(body) = n.checked_sub(1).and_then(|i| mailbox.encoded.get(i)) {
                let stream = stream.get_mut();
                let status = format!("+OK {} octets\r\n", mailbox.sizes[n - 1]);
                if stream.write_all(status.as_bytes()).await.is_err()
                    || stream.write_all(body).await.is_err()
                    || stream.flush().await.is_err()
                {
                    return;
                }
                continue;
            }
            reply.extend_from_slice(b"-ERR no such message\r\n");
        } else if command.starts_with("QUIT") {
            let _ = stream.get_mut().write_all(b"+OK bye\r\n").await;
            let _ = stream.get_mut().shutdown().await;
            return;
        } else {
            reply.extend_from_slice(b"+OK\r\n");
        }
        // TLS buffers what is written; flush so the reply leaves now.
        let stream = stream.get_mut();
        if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}
