//! The accept loop POP3 and SMTP share: back off when accept fails (EMFILE
//! and friends), turn away connections over the limits with the protocol's
//! "try again later", and hand the rest to the protocol's driver, each in a
//! task of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::per_ip::PerIpLimit;

/// What a listener lets through, and what it says to those it turns away.
pub(crate) struct Gate {
    /// For logs: `pop3`, `smtp`.
    pub(crate) protocol: &'static str,
    /// Connections over all listeners of the protocol.
    pub(crate) connections: Arc<Semaphore>,
    /// Connections per client address.
    pub(crate) per_ip: Arc<PerIpLimit>,
    /// The answers to "too many connections" and "too many from your
    /// address", CRLF included; `None` on an implicit-TLS port, where
    /// nothing can be said before the handshake.
    pub(crate) refusals: Option<(Vec<u8>, Vec<u8>)>,
    /// The load balancers whose connections start with a PROXY protocol
    /// header naming the client (`proxy_protocol`); empty: none. When
    /// set, only they may connect.
    pub(crate) proxies: Vec<crate::relay::Network>,
}

/// How long a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` changes.
pub(crate) async fn serve<F, Fut>(
    gate: Gate,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let protocol = gate.protocol;
    let handle = Arc::new(handle);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "{protocol} accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = gate.connections.clone().try_acquire_owned() else {
            tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: too many connections");
            refuse(&tcp, gate.refusals.as_ref().map(|(all, _)| all));
            continue;
        };
        if !gate.proxies.is_empty() {
            // Behind a load balancer: only it may connect, and it names
            // the client first; limits and everything after count the
            // client's address.
            if !gate.proxies.iter().any(|n| n.contains(peer.ip())) {
                tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: not from a proxy_protocol network");
                continue;
            }
            let (handle, per_ip) = (handle.clone(), gate.per_ip.clone());
            let refusal = gate.refusals.as_ref().map(|(_, one)| one.clone());
            tokio::spawn(async move {
                let mut tcp = tcp;
                let client = match tokio::time::timeout(
                    PROXY_HEADER_TIMEOUT,
                    proxy_header(&mut tcp),
                )
                .await
                {
                    Ok(Ok(yubin_proxy_proto::Proxied::Client { source, .. })) => source,
                    Ok(Ok(yubin_proxy_proto::Proxied::Local)) => peer,
                    Ok(Err(error)) => {
                        tracing::warn!(rip = %peer.ip(), %error, "{protocol} connection refused: PROXY header");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: no PROXY header in time");
                        return;
                    }
                };
                let Some(slot) = per_ip.try_take(client.ip()) else {
                    tracing::warn!(rip = %client.ip(), proxy = %peer.ip(), "{protocol} connection refused: too many connections from the address");
                    refuse(&tcp, refusal.as_ref());
                    return;
                };
                tracing::debug!(rip = %client.ip(), proxy = %peer.ip(), "{protocol} connection through a proxy");
                handle(tcp, client).await;
                drop(slot);
                drop(permit);
            });
            continue;
        }
        let Some(slot) = gate.per_ip.try_take(peer.ip()) else {
            tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: too many connections from the address");
            refuse(&tcp, gate.refusals.as_ref().map(|(_, one)| one));
            continue;
        };
        let connection = handle(tcp, peer);
        tokio::spawn(async move {
            connection.await;
            drop(slot);
            drop(permit);
        });
    }
}

/// Reads exactly a PROXY protocol header (version 1 or 2) from `tcp`,
/// nothing past it.
async fn proxy_header(tcp: &mut TcpStream) -> Result<yubin_proxy_proto::Proxied, String> {
    use tokio::io::AsyncReadExt;
    use yubin_proxy_proto::{ProxyError, V1_MAX, Version};
    let io = |e: std::io::Error| e.to_string();
    let mut first = [0u8; 5];
    tcp.read_exact(&mut first).await.map_err(io)?;
    match yubin_proxy_proto::start(&first).map_err(|e| e.to_string())? {
        Version::V1 => {
            // A line of at most 107 octets, read one at a time: the
            // client's first octets after it are not ours to take.
            let mut line = first.to_vec();
            while !line.ends_with(b"\r\n") {
                if line.len() >= V1_MAX {
                    return Err(
                        ProxyError::Malformed("a version 1 line over 107 octets").to_string()
                    );
                }
                line.push(tcp.read_u8().await.map_err(io)?);
            }
            yubin_proxy_proto::v1_line(&line).map_err(|e| e.to_string())
        }
        Version::V2 => {
            let mut fixed = [0u8; 16];
            fixed[..5].copy_from_slice(&first);
            tcp.read_exact(&mut fixed[5..]).await.map_err(io)?;
            let length = yubin_proxy_proto::v2_length(&fixed).map_err(|e| e.to_string())?;
            let mut body = vec![0u8; length];
            tcp.read_exact(&mut body).await.map_err(io)?;
            yubin_proxy_proto::v2_header(&fixed, &body).map_err(|e| e.to_string())
        }
    }
}

/// Tells a refused client to come back later (a passing condition, not a
/// network fault). The send buffer of a fresh socket is empty, so this
/// never waits.
fn refuse(tcp: &TcpStream, reply: Option<&Vec<u8>>) {
    if let Some(reply) = reply {
        let _ = tcp.try_write(reply);
    }
}
