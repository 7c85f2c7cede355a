#!/usr/bin/env bash
# Interop checks with clients and a server nobody here wrote: fetchmail, mpop,
# getmail6 and Dovecot, all from Debian. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v fetchmail >/dev/null || missing+=(fetchmail)
command -v mpop >/dev/null || missing+=(mpop)
command -v getmail >/dev/null || missing+=(getmail6)
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-core dovecot-pop3d)
if [ ${#missing[@]} -gt 0 ]; then
    echo "interop: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --quiet --bin yubin
exec python3 tests/interop/interop.py --yubin target/debug/yubin
