//! The CAPA answer (RFC 2449 §5), truthful for the state and the connection.

use super::{Expire, Offer, SessionConfig};
use crate::reply;

pub(super) fn write(out: &mut Vec<u8>, config: &SessionConfig, offer: &Offer, transaction: bool) {
    super::Reply::CapabilityList.write(out);
    for tag in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
        reply::line(out, format_args!("{tag}"));
    }
    // RFC 2449 §5: capabilities of the AUTHORIZATION state are announced in
    // both states; RFC 5034 §3 repeats it for SASL.
    if offer.plaintext_auth {
        reply::line(out, format_args!("USER"));
    }
    let mechanisms: Vec<&str> = super::authorization::usable_mechanisms(config, offer).collect();
    if !mechanisms.is_empty() {
        reply::line(out, format_args!("SASL {}", mechanisms.join(" ")));
    }
    // RFC 2595 §4: STLS is listed only where it is permitted: before login, without TLS.
    if !transaction && offer.stls_available && !offer.tls_active {
        reply::line(out, format_args!("STLS"));
    }
    reply::line(out, format_args!("UTF8"));
    if let Some(delay) = config.login_delay {
        reply::line(out, format_args!("LOGIN-DELAY {delay}"));
    }
    match config.expire {
        Some(Expire::Never) => reply::line(out, format_args!("EXPIRE NEVER")),
        Some(Expire::Days(days)) => reply::line(out, format_args!("EXPIRE {days}")),
        None => {}
    }
    if let Some(implementation) = &config.implementation {
        reply::line(out, format_args!("IMPLEMENTATION {implementation}"));
    }
    reply::end(out);
}
