//! POP before SMTP for an existing MTA: a Postfix SMTP access policy
//! delegation service (Postfix's SMTPD_POLICY_README).
//!
//! Postfix sends `name=value` lines ending with an empty line; we answer
//! `action=OK` when `client_address` has a live POP-before-SMTP grant and
//! `action=DUNNO` otherwise (never anything else, so the service can only
//! add permission, never take it away). Connections are persistent.
//!
//! ```text
//! smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
//!     check_policy_service inet:127.0.0.1:10040, reject_unauth_destination
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::RelayGrantStore;
use crate::logtext::Escaped;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Longest attribute line and most attributes per request: a request is
/// small; anything bigger is not Postfix.
const MAX_LINE: usize = 4096;
const MAX_ATTRIBUTES: usize = 100;

/// Accepts policy clients until shutdown.
pub async fn serve(
    listener: TcpListener,
    grants: Arc<dyn RelayGrantStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let grants = grants.clone();
        tokio::spawn(async move {
            if let Err(error) = conversation(tcp, grants).await {
                tracing::debug!(rip = %peer.ip(), %error, "policy client left");
            }
        });
    }
}

async fn conversation(
    tcp: tokio::net::TcpStream,
    grants: Arc<dyn RelayGrantStore>,
) -> std::io::Result<()> {
    let (read, mut write) = tcp.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let mut client: Option<String> = None;
    let mut attributes = 0;
    loop {
        line.clear();
        let n = tokio::time::timeout(
            Duration::from_secs(600),
            (&mut reader).take(MAX_LINE as u64).read_line(&mut line),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            let action = decide(client.take().as_deref(), grants.as_ref()).await;
            write
                .write_all(format!("action={action}\n\n").as_bytes())
                .await?;
            attributes = 0;
            continue;
        }
        attributes += 1;
        if attributes > MAX_ATTRIBUTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "too many attributes",
            ));
        }
        // Unknown attributes are ignored; for a repeated one, the last counts.
        if let Some(value) = text.strip_prefix("client_address=") {
            client = Some(value.to_owned());
        }
    }
}

async fn decide(client: Option<&str>, grants: &dyn RelayGrantStore) -> &'static str {
    let Some(ip) = client.and_then(|c| c.parse::<IpAddr>().ok()) else {
        return "DUNNO";
    };
    match grants.lookup(ip).await {
        Some(user) => {
            tracing::info!(rip = %ip, user = %Escaped(user.as_bytes()), "policy service: relay allowed by pop-before-smtp grant");
            "OK"
        }
        None => "DUNNO",
    }
}
