//! rspamd asked about one message over its HTTP protocol: `POST
//! /checkv2` with the envelope in request headers and the message as the
//! body; its JSON answer is `rspamd_reply`'s to read.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect::connect;
use super::{Answer, Message, rspamd_reply};
use crate::filter_config::FilterAddress;

/// The largest answer read (rspamd's are a few kilobytes; one that
/// rewrote a large body would be refused here, and we do not ask for
/// bodies back).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// rspamd at `address`'s answer about `message`.
pub(super) async fn ask(address: &FilterAddress, message: &Message<'_>) -> Result<Answer, String> {
    let mut stream = connect(address).await?;
    let io = |e: std::io::Error| format!("talking to {address}: {e}");
    stream
        .write_all(request_head(address, message).as_bytes())
        .await
        .map_err(io)?;
    stream.write_all(message.content).await.map_err(io)?;
    let mut response = Vec::with_capacity(8 * 1024);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(body) = complete_body(&response, false)? {
            return rspamd_reply::interpret(body).map_err(|e| format!("{address}: {e}"));
        }
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            // An answer without a length ends with the connection (we
            // asked for it to be closed).
            if let Some(body) = complete_body(&response, true)? {
                return rspamd_reply::interpret(body).map_err(|e| format!("{address}: {e}"));
            }
            return Err(format!(
                "{address} closed the connection before its answer ended"
            ));
        }
        if response.len() + n > MAX_ANSWER {
            return Err(format!("{address} answered more than {MAX_ANSWER} bytes"));
        }
        response.extend_from_slice(&buf[..n]);
    }
}

/// The request line and headers: the envelope as rspamd's protocol names
/// it (`IP`, `Helo`, `From`, `Rcpt`, `Queue-Id`, `User`, `MTA-Name`).
fn request_head(address: &FilterAddress, message: &Message<'_>) -> String {
    let mut head = format!(
        "POST /checkv2 HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        message.content.len()
    );
    let mut field = |name: &str, value: &str| {
        head.push_str(name);
        head.push_str(": ");
        head.extend(value.chars().filter(|c| !c.is_control()).take(998));
        head.push_str("\r\n");
    };
    field("IP", &message.ip.to_string());
    if let Some(name) = message.client_name {
        field("Hostname", name);
    }
    field("Helo", message.helo);
    field("From", &format!("<{}>", message.mail_from));
    for rcpt in message.recipients {
        field("Rcpt", &format!("<{rcpt}>"));
    }
    field("Queue-Id", message.queue_id);
    field("MTA-Name", message.our_name);
    if let Some(user) = message.user {
        field("User", user);
    }
    head.push_str("\r\n");
    head
}

/// The body of `response` once all of it has arrived (its
/// Content-Length, or, without one, the connection's end: `closed`);
/// `None` while more is due; an error for an answer that is not 200 or
/// not HTTP.
fn complete_body(response: &[u8], closed: bool) -> Result<Option<&[u8]>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("its answer is not HTTP: {e}")),
    };
    let status = parsed.code.unwrap_or(0);
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = parsed.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("Transfer-Encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    if chunked {
        return Err("it answered chunked, which we do not read".into());
    }
    let Some(length) = length.or(closed.then(|| response.len() - head_len)) else {
        return Ok(None);
    };
    let body = &response[head_len..];
    if body.len() < length {
        return Ok(None);
    }
    if status != 200 {
        let text: String = String::from_utf8_lossy(&body[..length.min(200)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        return Err(format!("it answered HTTP {status}: {text}"));
    }
    Ok(Some(&body[..length]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_goes_in_headers_without_line_breaks() {
        let rcpts = vec!["a@ours.test".to_owned(), "b@ours.test".to_owned()];
        let message = Message {
            our_name: "mx.ours.test",
            ip: "192.0.2.1".parse().expect("an address"),
            port: 1,
            client_name: None,
            helo: "evil\r\nX-Injected: 1",
            mail_from: "s@example.com",
            recipients: &rcpts,
            queue_id: "Q1",
            user: None,
            content: b"Subject: x\r\n\r\nhi\r\n",
        };
        let head = request_head(
            &FilterAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 11333,
            },
            &message,
        );
        assert_eq!(
            head,
            "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\nConnection: close\r\n\
             Content-Length: 18\r\nIP: 192.0.2.1\r\nHelo: evilX-Injected: 1\r\n\
             From: <s@example.com>\r\nRcpt: <a@ours.test>\r\nRcpt: <b@ours.test>\r\n\
             Queue-Id: Q1\r\nMTA-Name: mx.ours.test\r\n\r\n"
        );
    }

    #[test]
    fn an_answer_is_read_to_its_length_and_must_be_200() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}xy";
        assert_eq!(complete_body(&ok[..30], false).expect("partial"), None);
        assert_eq!(
            complete_body(&ok[..ok.len() - 1], false).expect("partial"),
            None
        );
        assert_eq!(complete_body(ok, false).expect("whole"), Some(&b"{}xy"[..]));
        let refused = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno";
        assert!(complete_body(refused, false).is_err());
        // No length: the body is what came before the connection closed.
        let no_length = b"HTTP/1.1 200 OK\r\n\r\n{}";
        assert_eq!(complete_body(no_length, false).expect("partial"), None);
        assert_eq!(
            complete_body(no_length, true).expect("whole"),
            Some(&b"{}"[..])
        );
        assert!(complete_body(b"SMTP 220 hello\r\n", false).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(complete_body(chunked, false).is_err());
    }
}
