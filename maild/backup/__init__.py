"""Backup-report mails: recognise a backup product's notification and read its outcome."""

from maild.backup.generic import GenericRule
from maild.backup.parsers import parse_report
from maild.backup.report import BackupReport, Status

__all__ = ["BackupReport", "GenericRule", "Status", "parse_report"]
