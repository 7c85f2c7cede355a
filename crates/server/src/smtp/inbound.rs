//! Sender authentication on the MX listener, around `yubin-mailauth`'s
//! checks: what a result gets (refused, tagged, delivered). The header
//! edits that follow are `header_edit`'s.

use yubin_mailauth::dmarc::{Outcome, Policy};
use yubin_mailauth::inbound::Checked;
use yubin_smtp_proto::Reply;

use crate::inbound_config::{DmarcReject, SpfFail};

/// What a checked message gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Refused at the end of DATA: never stored.
    Refuse(Reply),
    /// Delivered; `tag`: marked as suspicious (Subject tag, X-Spam-Flag).
    Deliver { tag: bool },
}

/// The decision for `checked` under the recipients' policy (RFC 7489 §6.6.4, RFC 7208
/// §8.4).
pub(super) fn decide(checked: &Checked, dmarc_reject: DmarcReject, spf_fail: SpfFail) -> Decision {
    let dmarc = &checked.dmarc;
    // A failure the domain wants acted on, while a check that could have
    // passed did not finish: the sender may try again (a slow DNS server,
    // or an attacker stalling the lookups, must not decide either way).
    if dmarc.outcome == Outcome::Fail && dmarc.apply != Policy::None && checked.unsure {
        return Decision::Refuse(Reply::new(
            451,
            "4.7.0",
            "Sender authentication could not be completed; try again later",
        ));
    }
    if dmarc.outcome == Outcome::Fail && dmarc.apply == Policy::Reject {
        return match dmarc_reject {
            DmarcReject::Reject => Decision::Refuse(Reply::with_text(
                550,
                "5.7.1",
                format!(
                    "Message rejected: the DMARC policy of {} asks to refuse mail it did not authenticate",
                    checked.from_domain
                ),
            )),
            DmarcReject::Tag => Decision::Deliver { tag: true },
        };
    }
    // An SPF fail decides only where DMARC does not (forwarded mail that
    // DKIM vouches for passes).
    if checked.spf == yubin_mailauth::inbound::SpfResult::Fail
        && spf_fail == SpfFail::Reject
        && dmarc.outcome != Outcome::Pass
    {
        return Decision::Refuse(Reply::new(
            550,
            "5.7.23",
            "Message rejected: the sender's SPF record does not allow this client",
        ));
    }
    Decision::Deliver {
        tag: dmarc.outcome == Outcome::Fail && dmarc.apply == Policy::Quarantine,
    }
}
