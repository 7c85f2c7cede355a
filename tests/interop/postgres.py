"""yubin on PostgreSQL (issue 16), for the interop script.

A private PostgreSQL cluster from the machine's own binaries (initdb and
pg_ctl, run as the `postgres` account when the script runs as root), and
on it:

- the real-mail corpus through every client of the Maildir run
  (fetchmail, getmail, mutt, mpop, curl, poplib), keep and delete, with
  the same byte-exact checks, against a node on the PostgreSQL backend.
  Carol's maildrop is filled the way a site moves in: the corpus in a
  Maildir, copied by `yubin migrate --from maildir --to postgres`, then
  two messages over SMTP;
- HAProxy in front of two nodes (`send-proxy-v2`, round robin): a POP3
  login from 127.0.0.2 on one node lets 127.0.0.2 relay through the
  other, 127.0.0.3 may not, and both nodes log the clients' addresses.
"""
import glob
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
import corpus  # noqa: E402


def binaries():
    """The directory of initdb and pg_ctl: on PATH, or Debian's versioned
    directory."""
    found = shutil.which("initdb")
    if found:
        # A symbolic link (Debian's /usr/local/bin) leads to the real ones.
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL's initdb is not installed")
    return os.path.dirname(candidates[-1])


class Cluster:
    """A throwaway cluster in `root/pg`, on a free loopback port."""

    def __init__(self, root, port):
        self.bin = binaries()
        self.dir = os.path.join(root, "pg")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port
        self.owner = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            account = pwd.getpwnam("postgres")
            self.owner = (account.pw_uid, account.pw_gid)
            os.chown(self.dir, *self.owner)
        os.chmod(self.dir, 0o700)
        self.run("initdb", "-D", self.data(), "-U", "yubin", "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        self.run("pg_ctl", "-D", self.data(), "-o",
                 "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200" % (port, self.dir),
                 "-l", os.path.join(self.dir, "server.log"), "-w", "start")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "yubin", "yubin")
        self.url = "postgresql://yubin@127.0.0.1:%d/yubin" % port

    def data(self):
        return os.path.join(self.dir, "data")

    def run(self, program, *args):
        def demote():
            if self.owner:
                os.setgid(self.owner[1])
                os.setuid(self.owner[0])
        return subprocess.run([os.path.join(self.bin, program), *args], preexec_fn=demote,
                              cwd="/", capture_output=True, check=True, timeout=120).stdout

    def psql(self, sql):
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "yubin", "-d", "yubin",
                        "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).decode()

    def stop(self):
        self.run("pg_ctl", "-D", self.data(), "-m", "fast", "-w", "stop")


class Node:
    """A yubin node on the cluster, with the attributes the corpus clients
    use (root, pop3, pop3s, smtp)."""

    def __init__(self, binary, root, name, cluster, ports, extra="", pop3_extra="", smtp_extra=""):
        self.root = root
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        self.pop3, self.pop3s, self.smtp, self.submission, self.submissions = ports
        self.config = os.path.join(root, "yubin.toml")
        with open(self.config, "w") as f:
            f.write('hostname = "interop.test"\ndata_dir = "%s"\n' % root)
            f.write('[server]\nallow_root = true\nnode_name = "%s"\n' % name)
            f.write('[storage]\nbackend = "postgres"\n[postgres]\nurl = "%s"\npool_size = 8\n' % cluster.url)
            # One server secret for every node, as docs/scaling.md asks.
            f.write('[users]\nsecret_file = "%s"\n' % os.path.join(os.path.dirname(root), "secret"))
            f.write('[pop3]\nlisten = ["127.0.0.1:%d"]\nlisten_tls = ["127.0.0.1:%d"]\nauth_failure_delay = "100ms"\n'
                    % (self.pop3, self.pop3s) + pop3_extra)
            f.write('[smtp]\nlisten = ["127.0.0.1:%d"]\nsubmission = ["127.0.0.1:%d"]\nsubmissions = ["127.0.0.1:%d"]\n'
                    % (self.smtp, self.submission, self.submissions) + smtp_extra)
            f.write(extra)
            f.write('[queue]\nroutes = { "*" = "127.0.0.1:9" }\nfirst_retry = "1h"\n')
            f.write('[inbound]\nauthentication = false\n')
        self.log_path = os.path.join(root, "yubin.log")
        self.process = None
        self.binary = binary

    def yubin(self, *args):
        return subprocess.run([self.binary, *args, "--config", self.config], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=300)

    def start(self, wait_for_port):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary, "serve", "--config", self.config],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        for port in (self.pop3, self.pop3s, self.smtp):
            wait_for_port(port)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=20)


def carols_messages(cluster):
    """Carol's stored messages, in POP3 order, from the database."""
    rows = cluster.psql(
        "SELECT encode(coalesce(string_agg(c.data, ''::bytea ORDER BY c.seq), ''::bytea), 'hex') "
        "FROM messages m JOIN users u ON u.id = m.user_id LEFT JOIN body_chunks c ON c.body_id = m.body_id "
        "WHERE u.name = 'carol' AND m.folder = '' GROUP BY m.id ORDER BY m.id")
    # One line a message, an empty one for an empty body.
    return [bytes.fromhex(line) for line in rows.split("\n")[: carols_count(cluster)]]


def carols_count(cluster):
    return int(cluster.psql(
        "SELECT count(*) FROM messages m JOIN users u ON u.id = m.user_id "
        "WHERE u.name = 'carol' AND m.folder = ''").strip())


def run(binary, root, check, free_ports, wait_for_port, run_corpus, smtp_pair, keep_comparable, compare_with_dovecot):
    print("yubin on PostgreSQL: the corpus through every client, and two nodes behind HAProxy")
    root = os.path.join(root, "postgres")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    cluster = Cluster(root, free_ports(1)[0])
    try:
        node = Node(binary, os.path.join(root, "node-a"), "node-a", cluster, free_ports(5))
        migrated = node.yubin("db", "migrate")
        check(migrated.returncode == 0, "yubin db migrate (%s)" % migrated.stderr.decode(errors="replace")[-300:])
        users = os.path.join(root, "dovecot-users")
        with open(users, "w") as f:
            f.write("alice:{PLAIN}alice-pw\ncarol:{PLAIN}carol-pw\n")
        imported = node.yubin("user", "import", users)
        check(imported.returncode == 0 and b"2 added" in imported.stdout,
              "yubin user import (%s)" % imported.stdout.decode(errors="replace").strip())
        node.start(wait_for_port)
        try:
            run_corpus_on(node, cluster, root, check, run_corpus, smtp_pair)
            run_clients_vs_dovecot(node, cluster, root, check, keep_comparable, compare_with_dovecot)
        finally:
            node.stop()
        run_two_nodes(binary, root, cluster, check, free_ports, wait_for_port)
    finally:
        cluster.stop()


class Seed:
    """Carol's corpus in a Maildir of its own, and `yubin migrate` from it
    to the cluster: how a site moves in."""

    def __init__(self, root, cluster, binary):
        self.dir = os.path.join(root, "seed")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "users"), "w") as f:
            f.write("carol:{PLAIN}carol-pw\n")
        self.config = os.path.join(self.dir, "yubin.toml")
        with open(self.config, "w") as f:
            f.write('data_dir = "%s"\n[server]\nallow_root = true\n[postgres]\nurl = "%s"\n' % (self.dir, cluster.url))
        self.cluster = cluster
        self.binary = binary
        self.mail = os.path.join(self.dir, "mail")
        self.maildir = os.path.join(self.mail, "carol")

    def fill(self):
        """Empties carol's maildrop in the database and the seed Maildir,
        and puts the corpus in the Maildir. Returns the corpus's names."""
        self.cluster.psql("DELETE FROM messages WHERE user_id = (SELECT id FROM users WHERE name = 'carol')")
        shutil.rmtree(self.maildir, ignore_errors=True)
        return corpus.seed(self.maildir)

    def migrate(self, check, count):
        moved = subprocess.run([self.binary, "migrate", "--from", "maildir", "--to", "postgres", "--verify",
                                "--config", self.config], capture_output=True, timeout=300)
        check(moved.returncode == 0 and b"verified" in moved.stdout,
              "yubin migrate --verify copies the corpus (%s)" % moved.stdout.decode(errors="replace").strip()[-200:])
        check(carols_count(self.cluster) == count, "all %d corpus messages moved in" % count)


def run_corpus_on(node, cluster, root, check, run_corpus, smtp_pair):
    seeded = Seed(root, cluster, node.binary)

    def seed(yubin):
        names = seeded.fill()
        seeded.migrate(check, len(names))
        smtp_pair(yubin.smtp)
        stored = carols_messages(cluster)
        check(len(stored) == len(names) + 2, "the corpus and both SMTP messages are in the maildrop")
        return stored

    run_corpus(root, node, seed=seed, left_behind=lambda yubin: carols_count(cluster), label="PostgreSQL")


def run_clients_vs_dovecot(node, cluster, root, check, keep_comparable, compare_with_dovecot):
    """fetchmail, getmail and mutt rewrite some messages on the way, so the
    corpus run only counts what they deliver. Here what they make of the
    node's answers must be, byte for byte, what they make of Dovecot's on
    the Maildir the corpus moved in from, as on the Maildir backend."""
    print("fetchmail, getmail and mutt on PostgreSQL: the same deliveries as from Dovecot")
    seeded = Seed(root, cluster, node.binary)
    seeded.fill()
    count = keep_comparable(seeded.maildir)
    seeded.migrate(check, count)
    compare_with_dovecot(root, node.pop3, seeded.mail, os.path.join(root, "dovecot-users"), "PostgreSQL", count)


def run_two_nodes(binary, root, cluster, check, free_ports, wait_for_port):
    a_ports, b_ports = free_ports(5), free_ports(5)
    front_pop3, front_smtp = free_ports(2)
    # The listeners take PROXY headers from HAProxy on loopback.
    proxied = 'proxy_protocol = ["127.0.0.1/32"]\n'
    nodes = [Node(binary, os.path.join(root, name + "-proxied"), name, cluster, ports,
                  extra='[pop_before_smtp]\nwindow = "10m"\n', pop3_extra=proxied, smtp_extra=proxied)
             for name, ports in (("node-a", a_ports), ("node-b", b_ports))]
    haproxy_config = os.path.join(root, "haproxy.cfg")
    with open(haproxy_config, "w") as f:
        f.write("global\n    maxconn 100\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
                "frontend pop3\n    bind 127.0.0.1:%d\n    default_backend yubin_pop3\n"
                "backend yubin_pop3\n    balance roundrobin\n"
                "    server a 127.0.0.1:%d send-proxy-v2\n    server b 127.0.0.1:%d send-proxy-v2\n"
                "frontend smtp\n    bind 127.0.0.1:%d\n    default_backend yubin_smtp\n"
                "backend yubin_smtp\n    balance roundrobin\n"
                "    server a 127.0.0.1:%d send-proxy-v2\n    server b 127.0.0.1:%d send-proxy-v2\n"
                % (front_pop3, a_ports[0], b_ports[0], front_smtp, a_ports[2], b_ports[2]))
    haproxy = None
    try:
        for node in nodes:
            node.start(wait_for_port)
        haproxy = subprocess.Popen(["haproxy", "-db", "-f", haproxy_config], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(front_pop3)
        wait_for_port(front_smtp)

        def pop3_login(source):
            sock = socket.create_connection(("127.0.0.1", front_pop3), timeout=30, source_address=(source, 0))
            replies = sock.makefile("rb")
            replies.readline()
            answers = []
            for line in (b"USER alice", b"PASS alice-pw", b"QUIT"):
                sock.sendall(line + b"\r\n")
                answers.append(replies.readline())
            sock.close()
            return answers[1]

        def relay(source):
            with smtplib.SMTP("127.0.0.1", front_smtp, timeout=30, source_address=(source, 0)) as s:
                s.ehlo("client.example")
                s.mail("alice@interop.test")
                code, _ = s.rcpt("carol@elsewhere.example")
                return code

        login = pop3_login("127.0.0.2")
        check(login.startswith(b"+OK"), "a POP3 login from 127.0.0.2 through HAProxy (%r)" % login)
        # Round robin: two relay attempts reach both nodes, whichever the
        # login reached.
        granted = [relay("127.0.0.2") for _ in range(2)]
        check(granted == [250, 250], "127.0.0.2 relays through both nodes on its login (%s)" % granted)
        refused = [relay("127.0.0.3") for _ in range(2)]
        check(refused == [554, 554], "127.0.0.3, with no login, may relay through neither (%s)" % refused)
        def lines(node, needle):
            return [line for line in node.log().splitlines() if needle in line]
        allowed = [lines(node, "smtp relay allowed") for node in nodes]
        check(all(len(found) == 1 and "rip=127.0.0.2 " in found[0] for found in allowed),
              "each node logs the relay it allowed with the client's address, not HAProxy's (%s)" % allowed)
        logins = lines(nodes[0], "pop3 login ") + lines(nodes[1], "pop3 login ")
        check(len(logins) == 1 and "rip=127.0.0.2 " in logins[0], "the login is logged with the client's address")
    finally:
        if haproxy:
            haproxy.terminate()
            haproxy.wait(timeout=20)
        for node in nodes:
            node.stop()
