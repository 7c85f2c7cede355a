#!/usr/bin/env bash
# Interop checks with clients and servers nobody here wrote: fetchmail, mpop,
# getmail6, mutt, Dovecot, swaks, Postfix and its smtp-sink, fail2ban, and
# the DKIM verifiers OpenDKIM, dkimpy and rspamd, the content filters
# clamav-milter, OpenDKIM and rspamd, and for DANE a zone
# signed by ldns-signzone, served by NSD and validated by unbound, and
# HAProxy in front of two nodes on PostgreSQL, all from Debian.
# Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v fetchmail >/dev/null || missing+=(fetchmail)
command -v mpop >/dev/null || missing+=(mpop)
command -v getmail >/dev/null || missing+=(getmail6)
command -v mutt >/dev/null || missing+=(mutt)
command -v ss >/dev/null || missing+=(iproute2)
command -v fail2ban-regex >/dev/null || missing+=(fail2ban)
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-core dovecot-pop3d)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
command -v swaks >/dev/null || missing+=(swaks)
# swaks needs these for STARTTLS and implicit TLS.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/sbin/opendkim ] || missing+=(opendkim)
# The benchmark's inbound row: Postfix with OpenDKIM and OpenDMARC.
[ -x /usr/sbin/opendmarc ] || missing+=(opendmarc)
command -v rspamd >/dev/null || missing+=(rspamd)
# A load balancer speaking the PROXY protocol, and PostgreSQL for the
# nodes behind it (issue 16).
command -v haproxy >/dev/null || missing+=(haproxy)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# Content filters: clamd and clamav-milter (issue 15).
[ -x /usr/sbin/clamd ] || missing+=(clamav-daemon)
[ -x /usr/sbin/clamav-milter ] || missing+=(clamav-milter)
# dkimpy, and PyNaCl for its Ed25519 signatures, in Debian's Python.
/usr/bin/python3 -c "import dkim, nacl" 2>/dev/null || missing+=(python3-dkim python3-nacl)
# DANE: signed zones, an authoritative server and a validating resolver.
command -v ldns-signzone >/dev/null || missing+=(ldnsutils)
[ -x /usr/sbin/nsd ] || missing+=(nsd)
[ -x /usr/sbin/unbound ] || missing+=(unbound)
if [ ${#missing[@]} -gt 0 ]; then
    echo "interop: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix's package would otherwise ask how to configure the system
    # instance; the interop test runs a private instance of its own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --quiet --bin yubin
exec python3 tests/interop/interop.py --yubin target/debug/yubin
