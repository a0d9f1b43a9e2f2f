"""A report package per published region-day: what `reporting` holds for it, in files a regulator can keep, with a
signed manifest that proves later that nothing was changed."""
# Built from `reporting` only (the published tables and their publication_log entries), in the region's own database,
# into the region's own directory (Settings.report_dir). A package is a folder `<day>/v<N>/`:
#   daily_settlements.csv|.parquet, suspicious_activity.csv|.parquet   each published table of the region-day
#   report.xlsx                                                        a sheet each, and a summary sheet
#   manifest.json                                                      what it was built from, control totals, hashes
#   manifest.sig                                                       Ed25519 signature of manifest.json (base64)
# and the region's directory holds the public key (public-key.pem) beside its packages.
#
# Deterministic: rows in a total order, no build time anywhere (the publication's own times only), fixed file
# metadata; the same publication gives byte-identical files. A republication (late data) gives the next version, which
# names the one it supersedes; a version is never overwritten. Money is exact in every format: decimal strings in CSV,
# decimal columns in Parquet, and in the workbook numbers formatted to the currency's digits, or text where a double
# cannot hold the value (the summary says how many).
#
# Memory is bounded: rows are read from a server-side cursor in chunks and each chunk is appended to every file.

from __future__ import annotations

import base64
import enum
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg import sql

from txmon import __version__
from txmon.core.credentials import write_private
from txmon.core.db import connect
from txmon.core.settings import GLOBAL_REPORTS, ConfigError, Role, Settings

FORMAT = "txmon-report-package/1"
TABLES = ("daily_settlements", "suspicious_activity")  # reporting's tables of a region-day, in package order
# The home database's roll-up gets a package of its own per day: every region's published daily settlements,
# aggregates only (what may cross regions).
GLOBAL = GLOBAL_REPORTS
GLOBAL_TABLES = ("global_daily_settlements",)
DATE_COLUMNS = {
    "daily_settlements": "settlement_date",
    "suspicious_activity": "event_date",
    "global_daily_settlements": "settlement_date",
}
CHUNK_ROWS = 50_000
MANIFEST, SIGNATURE, WORKBOOK, PUBLIC_KEY = "manifest.json", "manifest.sig", "report.xlsx", "public-key.pem"
# ISO 4217 minor units where they are not 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}
# Money columns and the column naming their currency (None: US dollars).
MONEY = {"amount": "currency", "settled_volume": "currency", "amount_usd": None, "threshold_usd": None}
# The files a package may hold (what the HTTP API serves), and their media types.
MEDIA_TYPES = {
    **{f"{t}.csv": "text/csv" for t in (*TABLES, *GLOBAL_TABLES)},
    **{f"{t}.parquet": "application/vnd.apache.parquet" for t in (*TABLES, *GLOBAL_TABLES)},
    WORKBOOK: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    MANIFEST: "application/json",
    SIGNATURE: "text/plain",
}
FileName = enum.Enum("FileName", {name: name for name in MEDIA_TYPES}, type=str)  # type: ignore[misc]
UNCONSTRAINED_NUMERIC = pa.decimal128(38, 9)  # numeric without a declared scale; a value it cannot hold is an error
EXCEL_MAX_ROWS = 1_048_575  # a sheet's rows below its header


class PackageError(RuntimeError):
    pass


# -- the signing key --------------------------------------------------------------------------------------------------


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key packages are signed with: TXMON_REPORT_SIGNING_KEY_FILE (PEM, PKCS#8), else
    <secrets dir>/report-signing-key, generated (0600) at set-up with the other secrets (txmon.core.credentials)."""
    path = settings.report_signing_key_path
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"the report signing key {path} does not exist (`txmon services up` makes one)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the report signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the report signing key {path} is not an Ed25519 key")
    return key


def public_key_pem(settings: Settings) -> bytes:
    return (
        signing_key(settings)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key")
    return key


# -- reading reporting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # information_schema's
    precision: int | None
    scale: int | None

    @property
    def arrow(self) -> pa.DataType:
        if self.data_type == "numeric":
            if self.precision is None:
                return UNCONSTRAINED_NUMERIC
            return pa.decimal128(self.precision, self.scale or 0)
        return {
            "bigint": pa.int64(),
            "integer": pa.int32(),
            "boolean": pa.bool_(),
            "date": pa.date32(),
            "timestamp with time zone": pa.timestamp("us", tz="UTC"),
            "ARRAY": pa.list_(pa.string()),
        }.get(self.data_type, pa.string())


def _columns(conn: psycopg.Connection, table: str) -> list[Column]:
    rows = conn.execute(
        """SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns
           WHERE table_schema = 'reporting' AND table_name = %s ORDER BY ordinal_position""",
        (table,),
    ).fetchall()
    if not rows:
        raise PackageError(f"reporting.{table} does not exist (`txmon migrate`)")
    return [Column(*row) for row in rows]


def _chunks(conn: psycopg.Connection, table: str, columns: list[Column], day: date, scope: str) -> Iterator[list]:
    """The day's rows of reporting.<table> (of the region ``scope``, or all for GLOBAL), in the order of all their
    columns (a total order), in chunks. JSON (the evidence) as PostgreSQL writes jsonb: one canonical text."""
    query = sql.SQL(
        "SELECT {columns} FROM reporting.{table} WHERE {day} = %(day)s AND (%(all)s OR region = %(region)s) "
        "ORDER BY {order}"
    ).format(
        columns=sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(c.name)) if c.data_type == "jsonb" else sql.Identifier(c.name)
            for c in columns
        ),
        table=sql.Identifier(table),
        day=sql.Identifier(DATE_COLUMNS[table]),
        order=sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(columns))),
    )
    with conn.cursor(name=f"package_{table}") as cur:
        cur.itersize = CHUNK_ROWS
        cur.execute(query, {"day": day, "all": scope == GLOBAL, "region": scope})
        while rows := cur.fetchmany(CHUNK_ROWS):
            yield rows


PUBLICATIONS = """
SELECT DISTINCT ON (table_name) table_name, publication_id, published_at, run_id, row_count, checks, staging_as_of,
       built_as_of, published_by, launched_by
FROM reporting.publication_log
WHERE partition_date = %s AND region = %s AND table_name = ANY(%s)
ORDER BY table_name, publication_id DESC
"""


def _publications(
    conn: psycopg.Connection, day: date, region: str, tables: tuple[str, ...] = TABLES
) -> dict[str, dict]:
    found = {}
    for row in conn.execute(PUBLICATIONS, (day, region, list(tables))).fetchall():
        name, pid, published_at, run_id, rows, checks, staging_as_of, built_as_of, by, launched = row
        found[name] = {
            "publication_id": pid,
            "published_at": _iso(published_at),
            "run_id": run_id,
            "row_count": rows,
            "checks": checks,
            "staging_as_of": _iso(staging_as_of),
            "built_as_of": _iso(built_as_of),
            "published_by": by,
            "launched_by": launched,
        }
    missing = [t for t in tables if t not in found]
    if missing:
        raise PackageError(f"{day}|{region} is not published ({', '.join(missing)}): nothing to package")
    return found


# -- control totals ---------------------------------------------------------------------------------------------------


@dataclass
class Totals:
    """Control totals of a region-day's published rows, accumulated chunk by chunk."""

    transactions: int = 0
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)  # currency -> count, volume
    suspicious: int = 0
    suspicious_by_reason: Counter = field(default_factory=Counter)

    def add(self, table: str, frame: pd.DataFrame) -> None:
        if table in ("daily_settlements", "global_daily_settlements"):
            for row in frame.itertuples(index=False):
                self.transactions += int(row.transaction_count)
                entry = self.settled.setdefault(row.currency, {"count": 0, "volume": Decimal(0)})
                entry["count"] += int(row.settled_count)
                entry["volume"] += row.settled_volume
        else:
            self.suspicious += len(frame)
            for reasons in frame["reasons"]:
                self.suspicious_by_reason.update(reasons)

    def as_json(self) -> dict:
        return {
            "transactions": self.transactions,
            "settled_by_currency": {
                currency: {"count": v["count"], "volume": str(v["volume"])}
                for currency, v in sorted(self.settled.items())
            },
            "suspicious": self.suspicious,
            "suspicious_by_reason": dict(sorted(self.suspicious_by_reason.items())),
        }


# -- the files --------------------------------------------------------------------------------------------------------


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _frame(chunk: list, columns: list[Column]) -> pd.DataFrame:
    """A chunk of rows as they came from PostgreSQL: Python objects, None for NULL (pandas' own string dtype would
    turn NULL into NaN, and Decimal must stay Decimal)."""
    return pd.DataFrame(chunk, columns=[c.name for c in columns], dtype=object)


def _text(column: Column) -> Any:
    """How a value of ``column`` is written as text (CSV, a workbook's text cell); NULL is empty."""
    if column.data_type == "ARRAY":
        return lambda v: "" if v is None else ";".join(v)
    if column.data_type in ("timestamp with time zone", "date"):
        return lambda v: "" if v is None else _iso(v)
    return lambda v: "" if v is None else str(v)


def _csv_frame(frame: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """Every value as the text a CSV keeps: decimals as written by PostgreSQL, times in UTC, lists joined by `;`."""
    return pd.DataFrame({c.name: list(map(_text(c), frame[c.name])) for c in columns}, index=frame.index)


EXCEL_DIGITS = 15  # a spreadsheet keeps and shows 15 significant digits of a number


def _excel_money(value: Decimal) -> float | None:
    """The number a spreadsheet cell holds for ``value`` when it shows it exactly (15 significant digits or fewer),
    else None (the value goes in as text)."""
    return float(value) if len(value.normalize().as_tuple().digits) <= EXCEL_DIGITS else None


class Workbook:
    """report.xlsx: a sheet per table (rows streamed in order), then the summary sheet."""

    def __init__(self, path: Path, created: datetime) -> None:
        self.book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False})
        # A fixed creation time (the publication's): the same publication gives the same file.
        self.book.set_properties({"created": created.astimezone(UTC).replace(tzinfo=None), "title": "txmon report"})
        self.formats: dict[int, Any] = {}
        self.text_cells = 0
        self.sheets: dict[str, tuple[Any, int]] = {}

    def _money_format(self, digits: int) -> Any:
        if digits not in self.formats:
            self.formats[digits] = self.book.add_format(
                {"num_format": "#,##0" + ("." + "0" * digits if digits else "")}
            )
        return self.formats[digits]

    def start(self, table: str, columns: list[Column]) -> None:
        sheet = self.book.add_worksheet(table)
        for i, column in enumerate(columns):
            sheet.write_string(0, i, column.name)
        self.sheets[table] = (sheet, 1)

    def append(self, table: str, columns: list[Column], frame: pd.DataFrame) -> None:
        sheet, row = self.sheets[table]
        if row - 1 + len(frame) > EXCEL_MAX_ROWS:
            raise PackageError(f"{table} has more rows than a spreadsheet sheet holds ({EXCEL_MAX_ROWS})")
        names = [c.name for c in columns]
        # Per column, once: money (with the index of its currency's column), a number, or text.
        money: dict[int, int | None] = {}
        for i, column in enumerate(columns):
            if column.name in MONEY:
                currency_column = MONEY[column.name]
                money[i] = names.index(currency_column) if currency_column else None
        numbers = {i for i, c in enumerate(columns) if c.data_type in ("bigint", "integer", "numeric")} - set(money)
        texts = [_text(c) for c in columns]
        for values in frame.itertuples(index=False, name=None):
            for i, value in enumerate(values):
                if value is None:
                    continue
                if i in money:
                    currency = values[money[i]] if money[i] is not None else "USD"
                    number = _excel_money(value)
                    if number is None:
                        sheet.write_string(row, i, str(value))
                        self.text_cells += 1
                    else:
                        sheet.write_number(row, i, number, self._money_format(MINOR_UNITS.get(currency, 2)))
                elif i in numbers:
                    sheet.write_number(row, i, float(value))
                else:
                    sheet.write_string(row, i, texts[i](value))
            row += 1
        self.sheets[table] = (sheet, row)

    def close(self, summary: list[tuple[str, Any]]) -> None:
        sheet = self.book.add_worksheet("summary")
        for row, (label, value) in enumerate(summary):
            sheet.write_string(row, 0, label)
            sheet.write_string(row, 1, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
        self.book.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _canonical(document: dict) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


# -- building ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    path: Path
    version: int
    created: bool  # False: the latest version already packages this publication
    manifest: dict


def versions(settings: Settings, day: date, scope: str) -> list[Path]:
    """The day's package versions of ``scope`` (a region, or GLOBAL), oldest first."""
    folder = settings.report_dir(scope) / day.isoformat()
    found = [p for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[1:]))


def build(settings: Settings, day: date, region: str) -> Built:
    """The package of the region-day's current publication, from the region's own database into its own directory."""
    if region not in settings.regions:
        raise PackageError(f"unknown region {region!r} (configured: {', '.join(settings.regions)})")
    with connect(settings.dsn_for_region(region, Role.PUBLISH), purpose="report") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot: files, totals, publications
        return _build(settings, conn, region, day, TABLES, _publications(conn, day, region))


def build_global(settings: Settings, day: date) -> Built:
    """The package of the home database's roll-up of the day: every region's published daily settlements (aggregates
    only), with each region's publication of them, from its own database."""
    publications = {}
    for region in settings.regions:
        with connect(settings.dsn_for_region(region, Role.PUBLISH), autocommit=True, purpose="report") as conn:
            try:
                publications[region] = _publications(conn, day, region, ("daily_settlements",))["daily_settlements"]
            except PackageError:
                continue  # the region has not published its settlements of the day
    if not publications:
        raise PackageError(f"no region has published its daily settlements of {day}: nothing to package")
    with connect(settings.home_dsn(Role.PUBLISH), purpose="report") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return _build(settings, conn, GLOBAL, day, GLOBAL_TABLES, publications)


def _build(
    settings: Settings,
    conn: psycopg.Connection,
    scope: str,
    day: date,
    tables: tuple[str, ...],
    publications: dict[str, dict],
) -> Built:
    """The latest version when it packages ``publications`` already, else a new version (its files written aside,
    then moved into place whole, signed)."""
    key = signing_key(settings)
    root = settings.report_dir(scope)
    root.mkdir(parents=True, exist_ok=True)
    pem = public_key_pem(settings)
    if not (root / PUBLIC_KEY).exists() or (root / PUBLIC_KEY).read_bytes() != pem:
        write_private(root / PUBLIC_KEY, pem.decode())
    # One build of a scope's day at a time, across threads and processes (two regions' refreshes both rebuild the
    # roll-up's package of the day): the next one finds this one's version.
    with _locked(root / day.isoformat()):
        previous = versions(settings, day, scope)
        if previous:
            latest = json.loads((previous[-1] / MANIFEST).read_text())
            if latest["publication"] == publications:
                return Built(previous[-1], int(previous[-1].name[1:]), False, latest)
        version = int(previous[-1].name[1:]) + 1 if previous else 1
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=root / day.isoformat()))
        try:
            manifest = _write(conn, staging, day, scope, tables, version, previous, publications)
            signature = base64.b64encode(key.sign(_canonical(manifest))).decode() + "\n"
            (staging / MANIFEST).write_bytes(_canonical(manifest))
            (staging / SIGNATURE).write_text(signature)
            final = staging.with_name(f"v{version}")
            os.rename(staging, final)  # never over an existing version
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Built(final, version, True, manifest)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _write(
    conn: psycopg.Connection,
    folder: Path,
    day: date,
    scope: str,
    tables: tuple[str, ...],
    version: int,
    previous: list[Path],
    publications: dict[str, dict],
) -> dict:
    published_at = max(datetime.fromisoformat(p["published_at"]) for p in publications.values())
    workbook = Workbook(folder / WORKBOOK, published_at)
    totals = Totals()
    rows: dict[str, int] = {}
    for table in tables:
        columns = _columns(conn, table)
        schema = pa.schema([pa.field(c.name, c.arrow) for c in columns])
        workbook.start(table, columns)
        rows[table] = 0
        with (
            open(folder / f"{table}.csv", "w", newline="") as csv_file,
            pq.ParquetWriter(folder / f"{table}.parquet", schema, compression="zstd") as parquet,
        ):
            csv_file.write(",".join(c.name for c in columns) + "\n")
            for chunk in _chunks(conn, table, columns, day, scope):
                frame = _frame(chunk, columns)
                _csv_frame(frame, columns).to_csv(csv_file, header=False, index=False, lineterminator="\n")
                try:
                    parquet.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise PackageError(f"{table}: a value does not fit its Parquet column exactly: {exc}") from None
                workbook.append(table, columns, frame)
                totals.add(table, frame)
                rows[table] += len(frame)
        published = sum(p["row_count"] for p in publications.values()) if scope == GLOBAL else None
        expected = published if published is not None else publications[table]["row_count"]
        if rows[table] != expected:
            raise PackageError(f"reporting.{table} {day}|{scope} has {rows[table]} rows, its publications {expected}")
    supersedes = None
    if previous:
        supersedes = {"version": int(previous[-1].name[1:]), "manifest_sha256": _sha256(previous[-1] / MANIFEST)}
    notes = [
        "CSV: decimals as stored, times in UTC (ISO 8601), a list of reasons joined by ';'.",
        "Parquet: decimal columns of the stored precision and scale (38, 9 where none is declared).",
        f"Workbook: money formatted to its currency's digits; {workbook.text_cells} value(s) a double cannot hold "
        f"exactly (more than {EXCEL_DIGITS} significant digits) are written as text.",
    ]
    summary: list[tuple[str, Any]] = [
        ("region", scope),
        ("day", day.isoformat()),
        ("version", str(version)),
        ("publications", {name: p["publication_id"] for name, p in publications.items()}),
        ("rows", rows),
        ("control totals", totals.as_json()),
        *(("note", note) for note in notes),
    ]
    workbook.close(summary)
    files = [
        {"name": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size}
        for path in sorted(folder.iterdir())
        if path.name not in (MANIFEST, SIGNATURE)
    ]
    return {
        "format": FORMAT,
        "region": scope,
        "day": day.isoformat(),
        "version": version,
        "supersedes": supersedes,
        "txmon_version": __version__,
        "publication": publications,
        "staging_as_of": min(p["staging_as_of"] or "" for p in publications.values()) or None,
        "rows": rows,
        "control_totals": totals.as_json(),
        "files": files,
        "notes": notes,
    }


# -- verification -----------------------------------------------------------------------------------------------------


def current_totals(settings: Settings, day: date, scope: str) -> tuple[dict, dict[str, int]]:
    """The control totals and row counts of what `reporting` holds for the day of ``scope`` now."""
    totals, rows = Totals(), {}
    dsn = settings.home_dsn(Role.PUBLISH) if scope == GLOBAL else settings.dsn_for_region(scope, Role.PUBLISH)
    with connect(dsn, purpose="report") as conn:
        for table in GLOBAL_TABLES if scope == GLOBAL else TABLES:
            columns = _columns(conn, table)
            rows[table] = 0
            for chunk in _chunks(conn, table, columns, day, scope):
                frame = _frame(chunk, columns)
                totals.add(table, frame)
                rows[table] += len(frame)
    return totals.as_json(), rows


def integrity(folder: Path, pem: bytes) -> tuple[dict | None, list[str]]:
    """The package's manifest (None when unreadable) and what is wrong with the package itself: its signature
    against ``pem``, each file's size and hash, a file the manifest does not name (tampering)."""
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
        signature = base64.b64decode((folder / SIGNATURE).read_text().strip(), validate=True)
    except FileNotFoundError as exc:
        return None, [f"not a report package: {Path(exc.filename or '').name} is missing"]
    except ValueError:
        return None, [f"tampered: {SIGNATURE} is not a base64 signature"]
    problems = []
    try:
        _load_public_key(pem).verify(signature, manifest_bytes)
    except InvalidSignature:
        problems.append(f"tampered: {MANIFEST} does not match its signature")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        return None, [*problems, f"tampered: {MANIFEST} is not JSON"]
    for entry in manifest.get("files", []):
        file = folder / entry["name"]
        if not file.exists():
            problems.append(f"tampered: {entry['name']} is missing")
        elif file.stat().st_size != entry["bytes"] or _sha256(file) != entry["sha256"]:
            problems.append(f"tampered: {entry['name']} differs from its hash in the manifest")
    listed = {e["name"] for e in manifest.get("files", [])} | {MANIFEST, SIGNATURE}
    problems += [f"tampered: {p.name} is not in the manifest" for p in sorted(folder.iterdir()) if p.name not in listed]
    return manifest, problems


def verify(settings: Settings, path: Path, public_key: Path | None = None, *, drift: bool = True) -> list[str]:
    """What is wrong with the package at ``path`` (its folder or its manifest): its integrity (against the
    configured key's public key, or ``public_key``), and with ``drift`` its control totals against `reporting` now.
    Empty when it verifies."""
    folder = path.parent if path.is_file() else path
    manifest, problems = integrity(folder, public_key.read_bytes() if public_key else public_key_pem(settings))
    if manifest is None or not drift:
        return problems
    day, region = date.fromisoformat(manifest["day"]), manifest["region"]
    totals, rows = current_totals(settings, day, region)
    if rows != manifest["rows"]:
        problems.append(f"drift: reporting now has {rows} rows, the package {manifest['rows']}")
    for name, value in manifest["control_totals"].items():
        if totals.get(name) != value:
            problems.append(f"drift: {name} in reporting now {totals.get(name)}, in the package {value}")
    return problems


def published_public_key(settings: Settings) -> bytes:
    """The public key published beside the packages (what the HTTP API serves and checks with: it never reads the
    signing key itself)."""
    for scope in (*settings.regions, GLOBAL):
        path = settings.report_dir(scope) / PUBLIC_KEY
        if path.is_file():
            return path.read_bytes()
    raise PackageError("no report package has been built yet: no public key is published")


def listing(settings: Settings, day: date, region: str) -> list[dict]:
    """The region-day's packages, every version, oldest first: each one's manifest and whether its signature and
    files verify against the published public key (`txmon report verify` also checks it against `reporting`)."""
    folders = versions(settings, day, region)
    if not folders:
        return []
    pem = published_public_key(settings)
    found = []
    for folder in folders:
        manifest, problems = integrity(folder, pem)
        found.append({"folder": folder, "manifest": manifest, "problems": problems})
    return found
