#!/bin/sh
# Two yubin nodes sharing one private PostgreSQL, on this machine: the
# README's "Several nodes" section, and the test that checks it.
#
#   contrib/two-nodes.sh DIR [YUBIN]   start (DIR: a new directory)
#   contrib/two-nodes.sh DIR stop      stop both nodes and the database
#
# YUBIN is the binary: the second argument, or the variable YUBIN, or
# target/release/yubin. Ports, changeable
# through the environment: PG_PORT (5544), A_BASE (11000) and B_BASE
# (12000); a node listens on BASE+110 (POP3), +995 (POP3S), +25 (SMTP),
# +587 and +465. The user alice gets the password in ALICE_PASSWORD
# (default "alice-pw").
set -eu

dir=$1
pg_port=${PG_PORT:-5544}

# PostgreSQL refuses to run as root; as root its commands run as postgres.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)
bin=$(dirname "$(readlink -f "$initdb")")

if [ "${2:-}" = stop ]; then
    for node in a b; do
        [ -f "$dir/$node.pid" ] && kill "$(cat "$dir/$node.pid")" 2>/dev/null || true
        rm -f "$dir/$node.pid"
    done
    as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null
    exit 0
fi

yubin=$(readlink -f "${2:-${YUBIN:-target/release/yubin}}")
mkdir -p "$dir/pg"
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir/pg"

# The database: a cluster of its own, on loopback.
as_postgres "$bin/initdb" -D "$dir/pg/data" -U yubin --auth=trust >/dev/null
as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_postgres "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U yubin yubin

# Two nodes: the same database, their own ports and data directories.
for node in a b; do
    if [ "$node" = a ]; then base=${A_BASE:-11000}; else base=${B_BASE:-12000}; fi
    mkdir -p "$dir/$node"
    cat >"$dir/$node.toml" <<EOF
hostname = "cluster.test"
data_dir = "$dir/$node"
[server]
node_name = "$node"
allow_root = true
[storage]
backend = "postgres"
[postgres]
url = "postgresql://yubin@127.0.0.1:$pg_port/yubin"
[users]
# One server secret for both nodes (the first to start makes it): the
# SCRAM salts of users without a stored one are then the same on either
# node, and comparing the two tells nobody which names exist.
secret_file = "$dir/secret"
[pop3]
listen = ["127.0.0.1:$((base + 110))"]
listen_tls = ["127.0.0.1:$((base + 995))"]
[smtp]
listen = ["127.0.0.1:$((base + 25))"]
submission = ["127.0.0.1:$((base + 587))"]
submissions = ["127.0.0.1:$((base + 465))"]
EOF
done

"$yubin" db migrate --config "$dir/a.toml"
echo "${ALICE_PASSWORD:-alice-pw}" | "$yubin" user add alice --password-stdin --config "$dir/a.toml"

for node in a b; do
    "$yubin" serve --config "$dir/$node.toml" >"$dir/$node.log" 2>&1 &
    echo $! >"$dir/$node.pid"
done
for node in a b; do
    tries=0
    until grep -q "pop3 listening" "$dir/$node.log"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 200 ]; then
            echo "node $node did not start:" >&2
            cat "$dir/$node.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
echo "node a: POP3 127.0.0.1:$((${A_BASE:-11000} + 110)), SMTP 127.0.0.1:$((${A_BASE:-11000} + 25))"
echo "node b: POP3 127.0.0.1:$((${B_BASE:-12000} + 110)), SMTP 127.0.0.1:$((${B_BASE:-12000} + 25))"
