"""Command line: maild run | check-config | db upgrade | deliver | ticket list/show."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from maild.config import Config, ConfigError, config_from_dict, load_config
from maild.log import configure_logging

EX_OK, EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 0, 65, 70, 75, 78


def embedded_config(base: Path | None = None) -> Config:
    """No mail server needed: Maildir inbox and outbox and SQLite under ./var."""
    base = (base or Path.cwd() / "var").resolve()
    return config_from_dict(
        {
            "service": {
                "name": "Supporto Consorzio (demo)",
                "address": "supporto@consorzio.example",
                "operators_address": "operatori@consorzio.example",
                "state_dir": str(base),
            },
            "mailbox": [
                {
                    "name": "supporto",
                    "type": "maildir",
                    "path": str(base / "inbox"),
                    "poll_interval": 1,
                }
            ],
            "smtp": {"transport": "maildir", "path": str(base / "outbox")},
            "operator": [
                {
                    "name": "Mario Rossi",
                    "email": "mario.rossi@consorzio.example",
                    "role": "coordinator",
                }
            ],
            "ente": [
                {
                    "name": "Comune di Vaiano Cremasco",
                    "domains": ["comune.vaiano-cremasco.cr.it"],
                    "profile": "PRO",
                    "province": "CR",
                }
            ],
        },
        Path("<embedded default>"),
    )


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("MAILD_CONFIG")
    if not path:
        return embedded_config()
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    from maild.notify import Notifier, templates_dir

    cfg = _config(args)
    configure_logging("critical", "console")  # the broken templates are printed below
    broken = Notifier(cfg).warm()
    for name, error in broken.items():
        print(f"{templates_dir(cfg) / name}: {error}", file=sys.stderr)
    if broken:
        return EX_CONFIG
    print(
        f"{cfg.source}: OK ({len(cfg.mailbox)} mailbox(es), {len(cfg.operator)} operator(s), "
        f"{len(cfg.ente)} ente(s))"
    )
    return EX_OK


def cmd_run(args: argparse.Namespace) -> int:
    from maild.daemon import Daemon

    cfg = _config(args)
    configure_logging(cfg.logging.level, cfg.logging.format)
    if cfg.source == Path("<embedded default>"):
        print(
            f"maild: no --config given, running the embedded default under "
            f"{cfg.service.state_dir} (drop messages into {cfg.mailbox[0].path}/new "
            f"or pipe them to `maild deliver`)",
            file=sys.stderr,
        )
    asyncio.run(Daemon(cfg).run())
    return EX_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from maild.daemon import prepare_database

    cfg = _config(args)
    prepare_database(cfg).dispose()
    print("database at head")
    return EX_OK


def cmd_deliver(args: argparse.Namespace) -> int:
    """One message from stdin, as the daemon would ingest it (Postfix pipe, procmail)."""
    from maild.daemon import prepare_database
    from maild.ingest import InboundItem, Ingestor, Runtime, TemporaryFailure

    raw = sys.stdin.buffer.read()
    try:
        cfg = _config(args)
    except ConfigError as e:  # the MTA keeps the message and retries once the admin fixed it
        print(f"maild deliver: configuration error:\n{e}", file=sys.stderr)
        return EX_TEMPFAIL
    configure_logging(cfg.logging.level, "json" if not sys.stderr.isatty() else "console")
    if not raw.strip():
        print("maild deliver: empty input", file=sys.stderr)
        return EX_DATAERR
    try:
        db = prepare_database(cfg)
        rt = Runtime.create(cfg, db=db)
        result = Ingestor(rt).ingest(InboundItem(raw, args.mailbox))
    except TemporaryFailure as e:
        print(f"maild deliver: temporary failure, retry later: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as e:  # database unreachable at start and the like
        print(f"maild deliver: cannot store the message now: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    if result.outcome == "quarantine" and (result.detail or "").startswith("not an e-mail"):
        print(f"maild deliver: {result.detail}", file=sys.stderr)
        return EX_DATAERR
    print(
        json.dumps(
            {
                "outcome": result.outcome,
                "ticket": result.ticket_number,
                "duplicate": result.duplicate,
            }
        )
    )
    return EX_OK


def cmd_ticket(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from maild.db import Database

    cfg = _config(args)
    db = Database(cfg.database_url)
    try:
        if db.is_empty():
            print(
                "no tickets yet: the database is empty (maild run or maild db upgrade creates it)",
                file=sys.stderr,
            )
            return 1
        return _ticket(args, cfg, db)
    except SQLAlchemyError as e:
        print(f"maild: cannot read the database {db.engine.url!r}: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        db.dispose()


def _ticket(args: argparse.Namespace, cfg: Config, db) -> int:
    from maild import queries

    if args.ticket_cmd == "list":
        rows = queries.list_tickets(db, cfg, status=args.status)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            print(queries.format_list(rows, cfg.service.tz))
        return EX_OK
    data = queries.show_ticket(db, cfg, args.number)
    if data is None:
        print(f"ticket {args.number} not found", file=sys.stderr)
        return 1
    print(
        json.dumps(data, ensure_ascii=False, indent=2)
        if args.json
        else queries.format_show(data, cfg.service.tz)
    )
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maild", description=__doc__)
    p.add_argument(
        "--config",
        "-c",
        help="configuration file (default: $MAILD_CONFIG, else the embedded default under ./var)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the daemon").set_defaults(fn=cmd_run)
    sub.add_parser("check-config", help="validate the configuration").set_defaults(
        fn=cmd_check_config
    )
    db = sub.add_parser("db", help="database maintenance")
    dbs = db.add_subparsers(dest="db_cmd", required=True)
    dbs.add_parser("upgrade", help="apply migrations").set_defaults(fn=cmd_db_upgrade)
    d = sub.add_parser("deliver", help="ingest one message from stdin")
    d.add_argument("--mailbox", default="deliver", help="name recorded as the message's source")
    d.set_defaults(fn=cmd_deliver)
    t = sub.add_parser("ticket", help="tickets")
    ts = t.add_subparsers(dest="ticket_cmd", required=True)
    tl = ts.add_parser("list", help="list tickets")
    tl.add_argument("--status", help="nuovo, in_carico, in_attesa, risolto, chiuso, or 'open'")
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(fn=cmd_ticket)
    tsh = ts.add_parser("show", help="show one ticket")
    tsh.add_argument("number")
    tsh.add_argument("--json", action="store_true")
    tsh.set_defaults(fn=cmd_ticket)
    from maild.sla.report import add_cli as sla_cli

    sla_cli(sub)  # maild sla report --month YYYY-MM [--ente NAME] [--format text|json|csv]
    from maild.backup import status as backup_status

    backup_status.register(sub, _config)  # maild backup status [--json]
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"maild: configuration error:\n{e}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
