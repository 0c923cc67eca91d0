"""A local web push service for tests: https on 127.0.0.1, VAPID checked, payloads decrypted.

It plays a browser's push service and the device behind it. It checks the VAPID token as a push
service does (the ES256 signature with `cryptography`, the audience, the expiry and the key the
subscription was made with) and decrypts the body with `http_ece` using the subscription's private
key, which only the "device" (the test) holds - an implementation independent of the pywebpush
that encrypted it. It records what it saw and answers as scripted per endpoint path.

Real push services are https only, and so is this one: its certificate is issued by a CA made on
the spot (bench/certificates.py) whose file (`ca_file`) a client trusts through `SSL_CERT_FILE`, so
omnicrm's web push channel needs no test-only switch to reach it.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from omnicrm.bench.certificates import issue_certificates

HOST = "127.0.0.1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Seen:
    """One request as the push service received it."""

    path: str
    headers: dict[str, str]
    client_port: int
    claims: dict[str, object] | None = None  # the verified VAPID claims; None when refused
    plaintext: bytes | None = None


@dataclass
class Device:
    """A browser's subscription: the ECDH key pair and auth secret only the device knows."""

    path: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def keys(self) -> dict[str, str]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def subscription(self, origin: str) -> str:
        """The browser's `PushSubscription.toJSON()`, as text."""
        return json.dumps({"endpoint": origin + self.path, "keys": self.keys()})


class PushService:
    """A threaded https server that verifies VAPID and decrypts like a push service + browser."""

    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.devices: dict[str, Device] = {}
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}  # path -> status, headers
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._folder = tempfile.TemporaryDirectory(prefix="omnicrm-push-")
        self.ca_file, cert_file, key_file = issue_certificates(Path(self._folder.name))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_file, key_file)
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.origin = f"https://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> PushService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._folder.cleanup()

    def device(self, answer: int = 201, headers: dict[str, str] | None = None) -> Device:
        device = Device(f"/push/{uuid.uuid4().hex}")
        self.devices[device.path] = device
        self.answers[device.path] = (answer, headers or {})
        return device

    def seen_at(self, device: Device) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == device.path]

    def verify_vapid(self, authorization: str) -> dict[str, object] | None:
        """RFC 8292: `vapid t=<JWT>, k=<key>`, the JWT signed ES256 by k, aud our origin, and k the
        key the subscription was made with."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return None
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, key = parts.get("t", ""), parts.get("k", "")
        if key != self.vapid_public_key or token.count(".") != 2:
            return None
        head, body, signature = token.split(".")
        header = json.loads(b64url_decode(head))
        sig = b64url_decode(signature)
        if header.get("alg") != "ES256" or len(sig) != 64:
            return None
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        claims: dict[str, object] = json.loads(b64url_decode(body))
        exp = claims.get("exp")
        if claims.get("aud") != self.origin or not isinstance(exp, int):
            return None
        if not time.time() < exp <= time.time() + 24 * 3600:
            return None
        return claims

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real push services

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                content = self.rfile.read(length)
                seen = Seen(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1]
                )
                with service._lock:
                    service.seen.append(seen)
                device = service.devices.get(self.path)
                status, extra = service.answers.get(self.path, (404, {}))
                seen.claims = service.verify_vapid(self.headers.get("Authorization", ""))
                if device is not None and seen.claims is None:
                    status, extra = 401, {}
                elif device is not None and status < 300:
                    seen.plaintext = http_ece.decrypt(
                        content, private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
                    )
                    extra = {"Location": f"{service.origin}/m/{uuid.uuid4().hex}", **extra}
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output stays quiet

        return Handler
