"""IMAP over TLS (implicit and STARTTLS) and SMTP with STARTTLS, with a private CA."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from maild.sources.imap import ImapSource

from .conftest import BENCH, IMAP_PASS, SmtpSink, free_port, make_config
from .mails import make_mail
from .test_e2e_imap import running, wait_until


@pytest.fixture(scope="module")
def tls_dovecot():
    """A private Dovecot with a self-signed certificate for 127.0.0.1 (imaps and STARTTLS)."""
    directory = Path(tempfile.mkdtemp(prefix="maild-dovecot-tls-"))
    directory.chmod(0o755)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port, ssl_port = free_port(), free_port()
    env = {**os.environ, "BENCH_PASS": IMAP_PASS}
    with open(directory / "up.log", "wb") as out:
        subprocess.run(
            ["bash", str(BENCH / "dovecot-up.sh"), str(directory), str(port)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        subprocess.run(
            ["bash", str(BENCH / "dovecot-down.sh"), str(directory)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        conf = directory / "dovecot.conf"
        text = conf.read_text().replace(
            "ssl = no", f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        )
        text = text.replace(
            "inet_listener imaps {\n    port = 0",
            f"inet_listener imaps {{\n    address = 127.0.0.1\n    port = {ssl_port}",
        )
        conf.write_text(text)
        subprocess.run(
            ["/usr/sbin/dovecot", "-c", str(conf)], check=True, stdout=out, stderr=subprocess.STDOUT
        )
    yield {"port": port, "ssl_port": ssl_port, "cert": cert, "key": key}
    subprocess.run(
        ["bash", str(BENCH / "dovecot-down.sh"), str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
async def test_imap_tls(tls_dovecot, state_dir, security):
    port = tls_dovecot["ssl_port"] if security == "ssl" else tls_dovecot["port"]
    from pydantic import SecretStr

    from maild.config import MailboxConfig

    mb = MailboxConfig(
        name="tls",
        host="127.0.0.1",
        port=port,
        security=security,
        username="supporto",
        tls_ca_file=tls_dovecot["cert"],
        password=SecretStr(IMAP_PASS),
    )
    src = ImapSource(mb, ingest=None)
    src.client = await src.connect()
    try:
        assert src.uidvalidity is not None
        assert isinstance(await src.search_all(), list)
        if security == "starttls":
            assert src.client.protocol.transport.get_extra_info("ssl_object") is not None
    finally:
        await src.close()


async def test_imap_refuses_an_untrusted_certificate(tls_dovecot, state_dir):
    from maild.config import MailboxConfig

    mb = MailboxConfig(
        name="tls",
        host="127.0.0.1",
        port=tls_dovecot["ssl_port"],
        security="ssl",
        username="supporto",
    )
    with pytest.raises(ssl.SSLError):
        await ImapSource(mb, ingest=None).connect()


async def test_smtp_starttls(tls_dovecot, imap, state_dir):
    """The outbox sends over STARTTLS to a server whose certificate a private CA vouches for."""
    sink = SmtpSink()
    port = free_port()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dovecot["cert"], tls_dovecot["key"])
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        imap.append(make_mail())
        cfg = make_config(
            state_dir,
            imap=imap,
            smtp_port=port,
            smtp={"security": "starttls", "tls_ca_file": str(tls_dovecot["cert"])},
        )
        async with running(cfg):
            await asyncio.to_thread(sink.wait_for, 2, 15)
            await wait_until(lambda: imap.count("maild/processed") == 1)
    finally:
        controller.stop()
