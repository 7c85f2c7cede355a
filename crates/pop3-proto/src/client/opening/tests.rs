//! The opening of a session, reply by reply.

use super::*;
use crate::client::Limits;

/// Feeds `server` to the opening and returns each step's result, taking
/// what the client queued after each.
fn play(
    opening: &mut Opening,
    pop: &mut Connection,
    server: &[u8],
) -> Vec<(Result<Ready, OpeningError>, String)> {
    pop.receive(server);
    let mut steps = Vec::new();
    while let Some(event) = pop.next_event().unwrap() {
        let ready = opening.on_event(event, pop);
        let sent = String::from_utf8(pop.output().to_vec()).unwrap();
        pop.clear_output();
        let stop = !matches!(ready, Ok(Ready::No));
        steps.push((ready, sent));
        if stop {
            break;
        }
    }
    steps
}

#[test]
fn greeting_then_capa_then_open() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(false);
    assert_eq!(opening.awaiting(), "greeting");
    let steps = play(
        &mut opening,
        &mut pop,
        b"+OK hi <1.2@host>\r\n+OK\r\nUSER\r\nTOP\r\n.\r\n",
    );
    assert_eq!(
        steps,
        [
            (Ok(Ready::No), "CAPA\r\n".into()),
            (Ok(Ready::Yes), String::new())
        ]
    );
    assert!(opening.capa_known() && opening.capabilities().top);
    assert_eq!(
        opening.greeting().and_then(Status::apop_timestamp),
        Some("<1.2@host>")
    );
}

#[test]
fn a_refused_greeting_ends_it() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(false);
    let steps = play(&mut opening, &mut pop, b"-ERR go away\r\n");
    assert!(
        matches!(&steps[..], [(Err(OpeningError::Greeting(s)), sent)] if !s.ok && sent.is_empty())
    );
}

#[test]
fn a_server_without_capa_is_opened_with_nothing_known() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(false);
    let steps = play(&mut opening, &mut pop, b"+OK\r\n-ERR what?\r\n");
    assert_eq!(steps.last().map(|s| &s.0), Some(&Ok(Ready::Yes)));
    assert!(!opening.capa_known());
}

#[test]
fn stls_upgrades_and_asks_again() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(true);
    let steps = play(
        &mut opening,
        &mut pop,
        b"+OK\r\n+OK\r\nSTLS\r\nUSER\r\n.\r\n+OK begin\r\n",
    );
    assert_eq!(
        steps,
        [
            (Ok(Ready::No), "CAPA\r\n".into()),
            (Ok(Ready::No), "STLS\r\n".into()),
            (Ok(Ready::StartTls), String::new()),
        ]
    );
    assert_eq!(opening.awaiting(), "STLS");
    // After the handshake, what CAPA said in clear is forgotten.
    assert_eq!(opening.tls_started(&mut pop), Ok(Ready::No));
    assert!(!opening.capabilities().user && !opening.capa_known());
    assert_eq!(pop.output(), b"CAPA\r\n");
    pop.clear_output();
    let steps = play(&mut opening, &mut pop, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(steps, [(Ok(Ready::Yes), String::new())]);
    assert!(opening.capabilities().has_sasl("PLAIN") && !opening.capabilities().stls);
}

#[test]
fn stls_required_but_not_offered_sends_nothing_more() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(true);
    let steps = play(&mut opening, &mut pop, b"+OK\r\n+OK\r\nUSER\r\n.\r\n");
    assert!(
        matches!(&steps[1], (Err(OpeningError::NoStls(why)), sent) if why.contains("does not offer") && sent.is_empty())
    );

    // Without CAPA it is tried, and a refusal is the same failure.
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(true);
    let steps = play(
        &mut opening,
        &mut pop,
        b"+OK\r\n-ERR\r\n-ERR no TLS here\r\n",
    );
    assert_eq!(steps[1], (Ok(Ready::No), "STLS\r\n".into()));
    assert!(matches!(&steps[2].0, Err(OpeningError::NoStls(why)) if why.contains("no TLS here")));
}

#[test]
fn utf8_is_asked_for_when_offered_and_a_refusal_changes_nothing() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(false);
    let steps = play(
        &mut opening,
        &mut pop,
        b"+OK\r\n+OK\r\nUTF8\r\n.\r\n-ERR not now\r\n",
    );
    assert_eq!(steps[1], (Ok(Ready::No), "UTF8\r\n".into()));
    assert_eq!(steps[2].0, Ok(Ready::Yes));
    assert!(opening.utf8_refused().is_some());
}

#[test]
fn a_reply_out_of_place_is_an_error() {
    let mut pop = Connection::new(Limits::default());
    let mut opening = Opening::new(false);
    pop.receive(b"+OK\r\n");
    let greeting = pop.next_event().unwrap().unwrap();
    assert_eq!(opening.on_event(greeting, &mut pop), Ok(Ready::No));
    assert!(matches!(
        opening.on_event(Event::ContentEnd, &mut pop),
        Err(OpeningError::Unexpected(Event::ContentEnd))
    ));
}

#[test]
fn uidl_refused_means_absent_only_without_a_claim_or_a_code() {
    let capabilities = |uidl| Capabilities {
        uidl,
        ..Capabilities::default()
    };
    let status = |text: &[u8]| Status::parse(text).unwrap();
    assert!(uidl_refusal_means_absent(
        &status(b"-ERR no"),
        &capabilities(false)
    ));
    assert!(!uidl_refusal_means_absent(
        &status(b"-ERR no"),
        &capabilities(true)
    ));
    assert!(!uidl_refusal_means_absent(
        &status(b"-ERR [SYS/TEMP] later"),
        &capabilities(false)
    ));
}
