"""TLS on the ZEO port (``<ssl>`` in zeo.conf) with real ZEO clients.

Certificates are made at test time with the openssl CLI: a CA, a server
certificate for ``localhost`` signed by it, a client certificate signed by
it, a client certificate signed by another CA, and a self-signed client
certificate (``openssl req -x509``: a CA certificate used as a leaf, with
its own key) listed in ``authenticate`` itself, the way ZEO's docs and tests
pin client certificates.

Each test checks what Python's ZEO client sees (stores and loads over TLS,
or ``ClientDisconnected``) and what zeod logged, and that a refused client
leaves the server serving the next one.
"""
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
import ZODB
from ZEO.ClientStorage import ClientStorage
from ZEO.Exceptions import ClientDisconnected

import zeod_forker

pytestmark = pytest.mark.skipif(
    zeod_forker.SERVER != "zeod", reason="drives zeod's own command line")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """Test certificates in ``directory``."""

    def __init__(self, directory):
        self.dir = directory
        self.ca, self.ca_key = self.self_signed("ca", "/CN=zeod test CA")
        self.other_ca, self.other_ca_key = self.self_signed(
            "other-ca", "/CN=somebody else's CA")
        self.server, self.server_key = self.issued(
            "server", "/CN=localhost", self.ca, self.ca_key,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        client_ext = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
        self.client, self.client_key = self.issued(
            "client", "/CN=renderer", self.ca, self.ca_key, client_ext)
        self.rogue, self.rogue_key = self.issued(
            "rogue", "/CN=renderer", self.other_ca, self.other_ca_key,
            client_ext)
        self.pinned, self.pinned_key = self.self_signed(
            "pinned", "/CN=pinned renderer")
        # What the server's `authenticate` names: the CA and the pinned one.
        self.authenticate = self.path("authenticate.pem")
        with open(self.authenticate, "w") as out:
            for name in (self.ca, self.pinned):
                with open(name) as f:
                    out.write(f.read())

    def path(self, name):
        return str(self.dir / name)

    def self_signed(self, name, subject):
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", subject)
        return cert, key

    def issued(self, name, subject, ca, ca_key, extensions):
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        csr, ext = self.path(name + ".csr"), self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write(extensions)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                "-out", csr, "-subj", subject)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                "-CAcreateserial", "-out", cert, "-days", "2",
                "-extfile", ext)
        return cert, key

    def context(self, cert=None, key=None):
        """What a renderer would build: trust our CA, present ``cert``."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if cert:
            context.load_cert_chain(cert, key)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


class Server:
    def __init__(self, tmp_path, ssl_section, address="127.0.0.1:0"):
        self.dir = tmp_path
        self.log = tmp_path / "server.log"
        address_file = tmp_path / "address"
        conf = tmp_path / "zeo.conf"
        conf.write_text(
            "<zeo>\n address %s\n <ssl>\n%s </ssl>\n</zeo>\n"
            "<filestorage 1>\n path %s\n</filestorage>\n"
            % (address, ssl_section, tmp_path / "Data.fs"))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [zeod_forker.ZEOD_BIN, "serve", "-C", str(conf),
                 "--address-file", str(address_file)],
                stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, RUST_LOG="zeod=debug"))
        deadline = time.monotonic() + 30
        while not address_file.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "zeod did not start"
            time.sleep(0.05)
        self.address = address_file.read_text().strip()
        if "/" in self.address:
            self.addr = self.address
        else:
            host, port = self.address.rsplit(":", 1)
            self.addr = (host, int(port))

    def log_text(self):
        return self.log.read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def server(tmp_path, pki):
    s = Server(tmp_path, " certificate %s\n key %s\n authenticate %s\n"
               % (pki.server, pki.server_key, pki.authenticate))
    yield s
    s.stop()


def open_db(server, context):
    storage = ClientStorage(server.addr, ssl=context,
                            ssl_server_hostname="localhost", wait_timeout=10)
    return ZODB.DB(storage)


def wait_for_log(server, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, server.log_text()):
            return True
        time.sleep(0.05)
    return False


def test_store_and_load_over_tls_with_client_certificates(server, pki):
    # A CA-signed client certificate and a pinned self-signed one.
    db = open_db(server, pki.context(pki.client, pki.client_key))
    with db.transaction() as conn:
        conn.root()["greeting"] = "over TLS"
        conn.root()["blob"] = b"x" * 100_000
    other = open_db(server, pki.context(pki.pinned, pki.pinned_key))
    with other.transaction() as conn:
        assert conn.root()["greeting"] == "over TLS"
        assert conn.root()["blob"] == b"x" * 100_000
        conn.root()["second"] = 2
    # The first client gets the second one's invalidation over TLS too.
    deadline = time.monotonic() + 10
    while True:
        with db.transaction() as conn:
            if conn.root().get("second") == 2:
                break
        assert time.monotonic() < deadline, "invalidation never arrived"
        time.sleep(0.05)
    db.close()
    other.close()
    assert "TLS established" in server.log_text()


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_clients_without_an_accepted_certificate_are_refused(server, pki, who):
    cert, key = {"no certificate": (None, None),
                 "another CA's certificate": (pki.rogue, pki.rogue_key)}[who]
    with pytest.raises(ClientDisconnected):
        ClientStorage(server.addr, ssl=pki.context(cert, key),
                      ssl_server_hostname="localhost", wait_timeout=2)
    assert wait_for_log(server, r"WARN.*TLS handshake refused"), \
        server.log_text()
    # The server survives and serves the next, good client.
    db = open_db(server, pki.context(pki.client, pki.client_key))
    with db.transaction() as conn:
        conn.root()["after"] = who
    db.close()
    assert server.proc.poll() is None


def test_plain_clients_fail_cleanly_and_see_no_plaintext(server, pki):
    # A ZEO client without TLS waits for a greeting that never comes.
    with pytest.raises(ClientDisconnected):
        ClientStorage(server.addr, wait_timeout=2)
    # A raw client that speaks first gets no ZEO byte in clear, and is
    # closed at once, not after a timeout.
    with socket.create_connection(server.addr, timeout=10) as s:
        s.sendall(b"\x00\x00\x00\x04ruok")
        started = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert time.monotonic() - started < 5
    assert b"Z5" not in data and b"M5" not in data, data
    assert wait_for_log(server, r"WARN.*TLS handshake refused")
    db = open_db(server, pki.context(pki.client, pki.client_key))
    db.close()
    assert server.proc.poll() is None


def test_wrong_server_name_is_refused_by_the_client(server, pki):
    with pytest.raises(ClientDisconnected):
        ClientStorage(server.addr,
                      ssl=pki.context(pki.client, pki.client_key),
                      ssl_server_hostname="zeo.example.org", wait_timeout=2)


def test_tls_without_authenticate_serves_any_client(tmp_path, pki):
    s = Server(tmp_path, " certificate %s\n key %s\n"
               % (pki.server, pki.server_key))
    try:
        db = open_db(s, pki.context())
        with db.transaction() as conn:
            conn.root()["anyone"] = True
        db.close()
        assert "TLS without client certificates" in s.log_text()
    finally:
        s.stop()


def test_tls_on_a_unix_socket(tmp_path, pki):
    # Python's ZEO client cannot do TLS over a Unix socket (it passes no
    # server_hostname, which asyncio requires), so zeod's own client checks
    # that the socket speaks TLS and asks for a client certificate.
    s = Server(tmp_path, " certificate %s\n key %s\n authenticate %s\n"
               % (pki.server, pki.server_key, pki.authenticate),
               address=str(tmp_path / "zeo.sock"))
    try:
        flags = ["--ssl-ca", pki.ca, "--ssl-server-hostname", "localhost"]
        refused = zeod("health", s.address, *flags)
        assert refused.returncode == 1, refused.stdout
        assert zeod("health", s.address).returncode == 1
        health = zeod("health", s.address, *flags, "--ssl-certificate",
                      pki.client, "--ssl-key", pki.client_key)
        assert health.returncode == 0, health.stdout + health.stderr
        assert "TLS established" in s.log_text()
    finally:
        s.stop()


def test_bad_tls_configurations_stop_the_server_naming_the_cause(
        tmp_path, pki):
    cases = [
        ("password-function ZEO.tests.testssl.pwfunc\n", "decrypted"),
        ("ciphers HIGH\n", "unknown key"),
    ]
    for extra, expected in cases:
        conf = tmp_path / "bad.conf"
        conf.write_text(
            "<zeo>\n address 127.0.0.1:0\n <ssl>\n certificate %s\n key %s\n"
            " %s </ssl>\n</zeo>\n<filestorage 1>\n path %s\n</filestorage>\n"
            % (pki.server, pki.server_key, extra, tmp_path / "Data.fs"))
        out = subprocess.run(
            [zeod_forker.ZEOD_BIN, "serve", "-C", str(conf), "--test"],
            capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        assert expected in out.stderr, out.stderr
    # A key that is not the certificate's.
    out = subprocess.run(
        [zeod_forker.ZEOD_BIN, "serve", "-f", str(tmp_path / "Data.fs"),
         "--ssl-certificate", pki.server, "--ssl-key", pki.client_key,
         "--test"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "certificate and key" in out.stderr, out.stderr


def zeod(*args):
    return subprocess.run([zeod_forker.ZEOD_BIN, *args], capture_output=True,
                          text=True, timeout=60)


def test_health_status_pack_and_bench_over_tls(server, pki):
    plain = zeod("health", server.address, "--timeout", "2")
    assert plain.returncode == 1, plain.stdout
    flags = ["--ssl-ca", pki.ca, "--ssl-certificate", pki.client,
             "--ssl-key", pki.client_key, "--ssl-server-hostname", "localhost"]
    health = zeod("health", server.address, *flags)
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith("ok: Z5 server"), health.stdout
    # Without a client certificate the server refuses the probe.
    refused = zeod("health", server.address, *flags[:2])
    assert refused.returncode == 1, refused.stdout
    status = zeod("status", server.address, "--json", *flags)
    assert status.returncode == 0, status.stdout + status.stderr
    summary = json.loads(status.stdout)
    assert [s["name"] for s in summary["storages"]] == ["1"]
    assert summary["storages"][0].get("info_error") is None, summary
    pack = zeod("pack", server.address, *flags)
    assert pack.returncode == 0, pack.stdout + pack.stderr
    assert wait_for_log(server, r"pack"), server.log_text()
    bench = zeod("bench", server.address, *flags, "--setup", "20",
                 "-n", "100", "-c", "2", "--phases", "load,commit")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    # The same from the environment (what the image's HEALTHCHECK sees).
    env = dict(os.environ, ZEOD_CLIENT_SSL_CA=pki.ca,
               ZEOD_CLIENT_SSL_CERTIFICATE=pki.pinned,
               ZEOD_CLIENT_SSL_KEY=pki.pinned_key)
    health = subprocess.run(
        [zeod_forker.ZEOD_BIN, "health", server.address],
        capture_output=True, text=True, timeout=60, env=env)
    assert health.returncode == 0, health.stdout + health.stderr
