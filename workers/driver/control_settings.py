"""Settings of the driver's control endpoint (`lrsa run`) and of the commands that call it
(`lrsa status`, `lrsa scale`), and where the bearer token comes from."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from lrsa.settings import LrsaSettings

DEFAULT_CONTROL_PORT = 9465


class ControlTokenSettings(LrsaSettings):
    control_token_file: Path | None = Field(None, description="file holding the control endpoint's bearer token "
                                            "(first line; wins over LRSA_CONTROL_TOKEN)")
    control_token: SecretStr | None = Field(None, description="the control endpoint's bearer token; prefer the "
                                            "env var or the file (a flag is visible in the process list)")

    def token(self) -> str | None:
        """The configured token (the file's first line, else the variable); None when neither is set."""
        if self.control_token_file is not None:
            text = self.control_token_file.read_text().strip().splitlines()
            if not text or not text[0].strip():
                raise ValueError(f"control token file {self.control_token_file} is empty (--control-token-file)")
            return text[0].strip()
        if self.control_token is not None and self.control_token.get_secret_value().strip():
            return self.control_token.get_secret_value().strip()
        return None


class ControlSettings(ControlTokenSettings):
    """The HTTP control/health endpoint on the driver of `lrsa run`."""

    control_endpoint: bool = Field(True, description="serve the control/health endpoint (--no-control-endpoint: "
                                   "none; no probes, `lrsa status` or `lrsa scale` then)")
    control_host: str = Field("127.0.0.1", description="address of the control endpoint (/healthz, /readyz, "
                              "/status, POST /pools/STAGE, /pause, /resume, /drain); any other than loopback "
                              "needs a token (--control-token-file or LRSA_CONTROL_TOKEN)")
    control_port: int | None = Field(DEFAULT_CONTROL_PORT, ge=0, description="port of the control endpoint "
                                     "(0: a free one, logged)")
    control_tls_certfile: Path | None = Field(None, description="PEM certificate (chain) of the control endpoint: "
                                              "serve HTTPS, so the bearer token never crosses the network in clear")
    control_tls_keyfile: Path | None = Field(None, description="PEM private key of --control-tls-certfile")
    control_bounds_file: Path | None = Field(None, description="JSON file where pool bounds set through the "
                                             "control endpoint are kept; read at start, so a restart keeps "
                                             "them (they win over the --*-pool-min/max flags)")

    @model_validator(mode="after")
    def _tls_pair(self) -> ControlSettings:
        if (self.control_tls_certfile is None) != (self.control_tls_keyfile is None):
            raise ValueError("control_tls_certfile and control_tls_keyfile go together")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None for plain HTTP."""
        if self.control_tls_certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.control_tls_certfile), str(self.control_tls_keyfile))
        return context


class ControlClientSettings(ControlTokenSettings):
    """`lrsa status` and `lrsa scale`: where the running worker's control endpoint is."""

    control_url: str = Field(f"http://127.0.0.1:{DEFAULT_CONTROL_PORT}",
                             description="base URL of the worker's control endpoint")
    control_timeout_s: float = Field(15.0, gt=0, description="longest wait for the worker's answer")
    control_tls_cafile: Path | None = Field(None, description="PEM CA bundle that signed the endpoint's "
                                            "certificate (https URLs; none: the system's)")

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.control_url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=str(self.control_tls_cafile) if self.control_tls_cafile else None)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address) binds to loopback only."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except OSError:
        return False
