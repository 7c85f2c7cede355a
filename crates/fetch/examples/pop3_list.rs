//! Lists a POP3 mailbox without changing it: the library on its own.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p yubin-fetch --example pop3_list -- pop.example.org alice
//! ```
//!
//! Connects with implicit TLS on port 995, certificates checked against the
//! system's roots; logs in with the best method the server offers; prints
//! each message's number, size, unique-id and subject (from TOP n 0).

use yubin_fetch::client::{AuthMethod, Pop3Client, ServerOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(host), Some(user)) = (args.next(), args.next()) else {
        eprintln!("usage: pop3_list HOST USER   (password in $POP3_PASSWORD)");
        std::process::exit(2);
    };
    let password = std::env::var("POP3_PASSWORD").map_err(|_| "set POP3_PASSWORD")?;

    let mut pop = Pop3Client::connect(&ServerOptions::new(host)).await?;
    pop.login(&user, &password, AuthMethod::Auto).await?;
    let (list, uids) = pop.list_and_uidl().await?;
    for entry in &list.entries {
        let uid = uids
            .as_ref()
            .and_then(|u| u.entries.iter().find(|e| e.number == entry.number))
            .map_or("-", |e| e.uid.as_str());
        let mut headers = Vec::new();
        pop.top(entry.number, 0, 1 << 20, &mut headers).await?;
        let subject = String::from_utf8_lossy(&headers)
            .lines()
            .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
            .unwrap_or_default();
        println!("{:>5} {:>9} {uid:<24} {subject}", entry.number, entry.size);
    }
    // QUIT without DELE: the mailbox is left as it was.
    pop.quit().await?;
    Ok(())
}
