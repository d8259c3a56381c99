"""The broker options every MQTT client command takes (``edge-har subscribe``, ``edge-har serve``).

One definition of ``--broker`` and the broker's authentication and TLS options, and one
:func:`build_config` turning them into the :class:`~edge_har.mqtt.config.MqttConfig` the daemon's
client is built from, so a broker one command reaches the other reaches with the same words and
the same checks. Errors are :class:`~edge_har.core.errors.CommandError` lines naming the option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional


def add_broker_options(
    parser: argparse.ArgumentParser, *, prefix: str = "", default: Optional[str] = "127.0.0.1", title: str = "broker"
) -> Any:
    """--broker, the broker's authentication and its TLS options: one definition for every MQTT client command.

    ``edge-har subscribe`` and ``edge-har serve`` both take them, so a broker that one reaches the
    other reaches with the same words. ``prefix`` (``"broker-"`` for serve, whose own
    ``--password-file`` guards the web app) goes in front of the authentication options:
    ``--broker-username``, ``--broker-password-env``, ``--broker-password-file``. ``default=None``
    makes the broker optional (:func:`build_config` is then not called). Returns the argument
    group ``--broker`` is in (``title``), for the command's own broker-related options.
    """
    where = "127.0.0.1, port 1883, or 8883 with TLS" if default else "none"
    group = parser.add_argument_group(title)
    group.add_argument(
        "--broker",
        default=default,
        type=str,
        metavar="HOST[:PORT]",
        help="broker address; mqtt://HOST[:PORT] and mqtts://HOST[:PORT] (TLS) work too; IPv6 as [::1]:1883 "
        f"(default: {where})",
    )
    auth = parser.add_argument_group("broker authentication (the password is never taken on the command line)")
    auth.add_argument(f"--{prefix}username", type=str, metavar="USER", help="broker username")
    pw = auth.add_mutually_exclusive_group()
    pw.add_argument(
        f"--{prefix}password-env", type=str, metavar="VAR", help="environment variable holding the broker password"
    )
    pw.add_argument(
        f"--{prefix}password-file", type=Path, metavar="FILE", help="file whose first line is the broker password"
    )
    tls = parser.add_argument_group("broker TLS")
    tls.add_argument(
        "--tls", action="store_true", help="use TLS, trusting the system CA store (implied by the options below)"
    )
    tls.add_argument(
        "--ca-file", type=Path, metavar="FILE", help="CA certificate (PEM) that signed the broker's certificate"
    )
    tls.add_argument("--cert-file", type=Path, metavar="FILE", help="client certificate (PEM) for mutual TLS")
    tls.add_argument("--key-file", type=Path, metavar="FILE", help="client private key (PEM) for --cert-file")
    tls.add_argument(
        "--tls-insecure", action="store_true", help="do not check the broker certificate's host name (lab use only)"
    )
    return group


def option_message(message: str, prefix: str = "") -> str:
    """An MqttConfigError message that names a config key (``mqtt.tls.ca_file: ...``) as the option typed."""
    for key, option in _OPTION_FOR_KEY.items():
        if message.startswith(key + ":"):
            option = option.replace("--password", f"--{prefix}password")
            return option + message[len(key) :]
    return message


_OPTION_FOR_KEY = {
    "mqtt.tls.ca_file": "--ca-file",
    "mqtt.tls.cert_file": "--cert-file",
    "mqtt.tls.key_file": "--key-file",
    "mqtt.tls": "TLS options",
    "mqtt.password_env": "--password-env",
    "mqtt.password_file": "--password-file",
}


def parse_broker(text: str) -> tuple[str, Optional[int], bool]:
    """``HOST[:PORT]`` (or ``mqtt[s]://HOST[:PORT]``, ``[v6]:PORT``) -> (host, port or None, TLS implied).

    Raises ValueError with a message naming what is wrong.
    """
    from urllib.parse import urlsplit

    raw = text.strip()
    tls = False
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"--broker {text!r}: scheme must be mqtt:// or mqtts://")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"--broker {text!r}: the port must be a number 1-65535") from None
        if not parts.hostname:
            raise ValueError(f"--broker {text!r}: no host")
        return parts.hostname, port, tls
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep:
            raise ValueError(f"--broker {text!r}: missing ']' after the IPv6 address")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"--broker {text!r}: expected [IPv6]:PORT")
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        host, port_text = raw, ""  # a bare host, or a bare IPv6 address
    if not host:
        raise ValueError(f"--broker {text!r}: no host")
    if not port_text:
        return host, None, tls
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--broker {text!r}: the port must be a number 1-65535, got {port_text!r}")
    return host, int(port_text), tls


def build_config(args: argparse.Namespace, prefix: str = "") -> Any:
    """An MqttConfig from the command line (:func:`add_broker_options`), so the client is built exactly as the daemon's.

    ``prefix`` is the one given to :func:`add_broker_options`; ``--protocol`` and ``--share`` are
    read where the command has them (subscribe), else MQTT 3.1.1.
    """
    from pydantic import ValidationError

    from edge_har.core.errors import CommandError
    from edge_har.mqtt.config import MqttConfig, TlsConfig

    try:
        host, port, tls_from_url = parse_broker(args.broker)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    dest = prefix.replace("-", "_")
    share = getattr(args, "share", None)
    protocol = getattr(args, "protocol", None) or ("5" if share is not None else "3.1.1")
    if share is not None:
        if protocol != "5":
            raise CommandError("--share needs MQTT 5 (shared subscriptions): drop --protocol 3.1.1")
        if not share or any(c in share for c in "/+#") or share.strip() != share:
            raise CommandError(f"--share {share!r}: a group name cannot be empty or contain '/', '+', '#', spaces")
    use_tls = bool(tls_from_url or args.tls or args.ca_file or args.cert_file or args.key_file or args.tls_insecure)
    try:
        tls = (
            TlsConfig(
                ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file, insecure=args.tls_insecure
            )
            if use_tls
            else None
        )
        return MqttConfig(
            host=host,
            port=port or (8883 if use_tls else 1883),
            protocol=protocol,
            username=getattr(args, f"{dest}username"),
            password_env=getattr(args, f"{dest}password_env"),
            password_file=getattr(args, f"{dest}password_file"),
            tls=tls,
            keepalive=30,
            reconnect_min_s=0.5,
            reconnect_max_s=10.0,
        )
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            option = "-".join(str(part) for part in err["loc"]).replace("_", "-")
            if option in ("username", "password-env", "password-file"):
                option = prefix + option
            problems.append(f"--{option}: {message}" if option else message)
        raise CommandError("; ".join(problems)) from None
