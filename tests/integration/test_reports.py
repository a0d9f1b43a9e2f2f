"""Report packages: built from what `reporting` published, deterministic, versioned on republication, verified
(tampering and drift each named)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import zipfile
from datetime import date
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from tests.integration.test_api import running_api
from tests.integration.test_ingest import event, line

DAY, REGION = date(2026, 11, 18), "EU"


def land(platform, tmp_path, name: str, events: list[dict]) -> None:
    source = tmp_path / f"{name}.jsonl"
    source.write_text("\n".join(line(e) for e in events) + "\n")
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")


def at(hour: int) -> str:
    return f"{DAY}T{hour:02d}:00:00Z"


FIRST = [
    event("r-1", amount="12500.10", currency="EUR", region=REGION, counterparty_id="mch-1", event_time=at(9)),
    event("r-2", amount="0.01", currency="EUR", region=REGION, event_time=at(10)),
    event("r-3", amount="15.00", currency="GBP", region=REGION, fraud_flag=True, event_time=at(11)),
    event("r-4", "pending", amount="123456789012.3456", currency="EUR", region=REGION, event_time=at(12)),
]


@pytest.fixture(scope="module")
def packaged(module_platform, tmp_path_factory):
    """The closed day landed and materialized: its refresh published it and built its package (version 1). One for
    the module: a test that edits a package edits a copy, or puts it back; the republication runs last."""
    land(module_platform, tmp_path_factory.mktemp("packaged"), "first", FIRST)
    module_platform.txmon("materialize", "--date", DAY.isoformat(), "--region", REGION)
    root = module_platform.settings.report_dir(REGION)
    assert (root / DAY.isoformat() / "v1" / "manifest.json").exists()
    return module_platform, root


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_package_holds_the_published_region_day_exactly_and_verifies(packaged):
    platform, root = packaged
    v1 = root / DAY.isoformat() / "v1"
    assert sorted(p.name for p in v1.iterdir()) == [
        "daily_settlements.csv",
        "daily_settlements.parquet",
        "manifest.json",
        "manifest.sig",
        "report.xlsx",
        "suspicious_activity.csv",
        "suspicious_activity.parquet",
    ]
    assert (root / "public-key.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert (manifest["region"], manifest["day"], manifest["version"], manifest["supersedes"]) == (
        REGION,
        DAY.isoformat(),
        1,
        None,
    )
    logged = dict(
        platform.query(
            "SELECT table_name, max(publication_id) FROM reporting.publication_log"
            " WHERE partition_date = %s AND region = %s GROUP BY 1",
            (DAY, REGION),
        )
    )
    assert {t: p["publication_id"] for t, p in manifest["publication"].items()} == logged
    assert all(p["checks"] for p in manifest["publication"].values())
    # Control totals: 4 transactions, 3 settled (EUR 12500.10 + 0.01, GBP 15.00), 3 suspicious (two over the
    # threshold, the pending one among them; one flagged).
    totals = manifest["control_totals"]
    assert totals["transactions"] == 4
    assert totals["settled_by_currency"] == {
        "EUR": {"count": 2, "volume": "12500.1100"},
        "GBP": {"count": 1, "volume": "15.0000"},
    }
    assert totals["suspicious"] == 3
    assert totals["suspicious_by_reason"] == {"amount_over_threshold": 2, "fraud_flag": 1}
    # Money exact: the CSV's decimal strings and the Parquet's decimals are reporting's values.
    published = dict(
        platform.query(
            "SELECT transaction_id, amount FROM reporting.suspicious_activity WHERE event_date = %s AND region = %s",
            (DAY, REGION),
        )
    )
    with open(v1 / "suspicious_activity.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["transaction_id"]: Decimal(r["amount"]) for r in rows} == published
    # NULL is empty, never a word: only r-1 names a counterparty.
    assert {r["transaction_id"]: r["counterparty_id"] for r in rows} == {"r-1": "mch-1", "r-3": "", "r-4": ""}
    table = pq.read_table(v1 / "suspicious_activity.parquet").to_pydict()
    assert dict(zip(table["transaction_id"], table["amount"], strict=True)) == published
    assert dict(zip(table["transaction_id"], table["counterparty_id"], strict=True)) == {
        "r-1": "mch-1",
        "r-3": None,
        "r-4": None,
    }
    assert sorted(map(sorted, table["reasons"])) == [["amount_over_threshold"]] * 2 + [["fraud_flag"]]
    files = {f["name"]: f for f in manifest["files"]}
    assert {name: f["sha256"] for name, f in files.items()} == {
        k: v for k, v in digests(v1).items() if k not in ("manifest.json", "manifest.sig")
    }
    verified = platform.txmon("report", "verify", str(v1))
    assert "verified" in verified.stdout

    # The home database's roll-up has its own package of the day: aggregates only, each region's publication named.
    rolled_up = platform.settings.report_dir("global") / DAY.isoformat() / "v1"
    assert sorted(p.name for p in rolled_up.iterdir()) == [
        "global_daily_settlements.csv",
        "global_daily_settlements.parquet",
        "manifest.json",
        "manifest.sig",
        "report.xlsx",
    ]
    whole = json.loads((rolled_up / "manifest.json").read_text())
    assert whole["region"] == "global" and list(whole["publication"]) == [REGION]
    assert whole["publication"][REGION] == manifest["publication"]["daily_settlements"]
    assert whole["control_totals"]["settled_by_currency"] == totals["settled_by_currency"]
    assert whole["control_totals"]["transactions"] == 4
    assert "verified" in platform.txmon("report", "verify", str(rolled_up)).stdout


def test_verify_names_an_edited_csv_cell_and_a_changed_parquet_byte(packaged, tmp_path):
    platform, root = packaged
    v1 = tmp_path / "v1"
    shutil.copytree(root / DAY.isoformat() / "v1", v1)
    settlements = v1 / "daily_settlements.csv"
    settlements.write_text(settlements.read_text().replace("12500.1100", "12500.1200"))
    parquet = v1 / "suspicious_activity.parquet"
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0x01
    parquet.write_bytes(bytes(data))
    checked = platform.txmon("report", "verify", str(v1), check=False)
    assert checked.returncode == 1
    assert "tampered: daily_settlements.csv" in checked.stderr
    assert "tampered: suspicious_activity.parquet" in checked.stderr
    # A manifest edited to match is caught by its signature.
    manifest = v1 / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"transactions": 4', '"transactions": 5'))
    forged = platform.txmon("report", "verify", str(v1), check=False)
    assert "tampered: manifest.json does not match its signature" in forged.stderr


def test_report_arguments_get_one_line_errors(platform):
    missing = platform.txmon("report", "--date", DAY.isoformat(), check=False)
    assert missing.returncode == 2 and "--date and --region are required" in missing.stderr
    unpublished = platform.txmon("report", "--date", DAY.isoformat(), "--region", REGION, check=False)
    assert unpublished.returncode == 1 and "is not published" in unpublished.stderr
    assert "Traceback" not in missing.stderr + unpublished.stderr


def test_the_api_lists_a_days_packages_and_serves_their_files_and_the_public_key(packaged, tmp_path):
    platform, root = packaged
    with running_api(platform, tmp_path) as api:
        listed = api.ok("/reports", date=DAY.isoformat())
        assert listed["public_key_url"] == "/reports/public-key"
        (only,) = listed["items"]
        assert (only["region"], only["date"], only["version"], only["verified"]) == (REGION, DAY.isoformat(), 1, True)
        assert only["control_totals"]["suspicious"] == 3 and only["problems"] == []
        for entry in only["files"]:
            got = api.get(entry["url"])
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == entry["sha256"]
        assert api.get(only["files"][0]["url"]).headers["content-security-policy"].startswith("default-src 'self'")
        signed = api.get(only["manifest_url"]).content
        assert signed == (root / DAY.isoformat() / "v1" / "manifest.json").read_bytes()
        key = api.client.get("/reports/public-key")  # no key needed
        assert key.status_code == 200 and key.content == (root / "public-key.pem").read_bytes()
        # Region-scoped: a key of US neither lists nor downloads EU's packages.
        assert api.ok("/reports", "analyst-key-us", date=DAY.isoformat())["items"] == []
        assert api.get(only["manifest_url"], "analyst-key-us").status_code == 403
        assert api.get(f"/reports/{REGION}/{DAY.isoformat()}/2/manifest.json").status_code == 404
        assert api.get(f"/reports/{REGION}/{DAY.isoformat()}/1/secrets.txt").status_code == 400
        # A regulator's download, verified elsewhere with the served public key alone.
        downloaded = tmp_path / "downloaded"
        downloaded.mkdir()
        for url in [f["url"] for f in only["files"]] + [only["manifest_url"], only["signature_url"]]:
            (downloaded / url.rsplit("/", 1)[1]).write_bytes(api.get(url).content)
        (tmp_path / "public-key.pem").write_bytes(key.content)
        offline = platform.txmon(
            "report", "verify", str(downloaded), "--public-key", str(tmp_path / "public-key.pem"), "--offline"
        )
        assert "signature and files verified" in offline.stdout
        # A changed file shows in the listing.
        edited = root / DAY.isoformat() / "v1" / "daily_settlements.csv"
        original = edited.read_bytes()
        edited.write_text("region\n")
        try:
            (changed,) = api.ok("/reports", date=DAY.isoformat(), region=REGION)["items"]
        finally:
            edited.write_bytes(original)
        assert not changed["verified"]
        assert changed["problems"] == ["tampered: daily_settlements.csv differs from its hash in the manifest"]


EXACT_DAY = date(2026, 11, 17)
HOSTILE = '=HYPERLINK("http://x","y"),\'\n;x\u00e9'  # a formula, quotes, a comma, a newline: kept verbatim


def test_money_and_identifiers_are_exact_in_every_format(module_platform, tmp_path):
    platform = module_platform  # a day of its own
    stamp = f"{EXACT_DAY}T08:00:00Z"
    land(
        platform,
        tmp_path,
        "exact",
        [
            event("m-max", amount="999999999999.9999", currency="EUR", region=REGION, event_time=stamp),
            event("m-min", amount="0.0001", currency="EUR", region=REGION, event_time=stamp),
            event("m-jpy", amount="3000000", currency="JPY", region=REGION, event_time=stamp),
            event(HOSTILE, amount="1.00", currency="EUR", region=REGION, fraud_flag=True, event_time=stamp),
        ],
    )
    platform.txmon("materialize", "--date", EXACT_DAY.isoformat(), "--region", REGION)
    v1 = platform.settings.report_dir(REGION) / EXACT_DAY.isoformat() / "v1"
    with open(v1 / "daily_settlements.csv", newline="") as fh:
        volumes = {r["currency"]: r["settled_volume"] for r in csv.DictReader(fh)}
    assert volumes == {"EUR": "1000000000001.0000", "JPY": "3000000.0000"}  # 10^12 - 0.0001 + 0.0001 + 1.00
    with open(v1 / "suspicious_activity.csv", newline="") as fh:
        amounts = {r["transaction_id"]: r["amount"] for r in csv.DictReader(fh)}
    assert amounts == {"m-max": "999999999999.9999", "m-jpy": "3000000.0000", HOSTILE: "1.0000"}
    table = pq.read_table(v1 / "suspicious_activity.parquet").to_pydict()
    assert dict(zip(table["transaction_id"], table["amount"], strict=True)) == {
        k: Decimal(v) for k, v in amounts.items()
    }
    settlements = pq.read_table(v1 / "daily_settlements.parquet").to_pydict()
    assert dict(zip(settlements["currency"], settlements["settled_volume"], strict=True)) == {
        "EUR": Decimal("1000000000001.0000"),
        "JPY": Decimal("3000000.0000"),
    }
    # The workbook: 10^12 - 0.0001 is text (no double holds it), yen have no decimals, the hostile id is a string
    # (never a formula), and the summary counts the values written as text.
    with zipfile.ZipFile(v1 / "report.xlsx") as book:
        sheets = {name: book.read(name).decode() for name in book.namelist() if name.startswith("xl/worksheets/")}
        styles = book.read("xl/styles.xml").decode()
    cells = "".join(sheets.values())
    assert "<t>999999999999.9999</t>" in cells and "<v>999999999999.9999</v>" not in cells
    assert 'formatCode="#,##0"' in styles and 'formatCode="#,##0.00"' in styles
    found = cells.find("<f>")
    assert found < 0, cells[found - 300 : found + 100]
    assert '<t>=HYPERLINK("http://x","y"),' in cells
    assert re.search(r"<t>Workbook: [^<]*?([1-9]\d*) value\(s\) a double cannot hold exactly", cells)
    assert "verified" in platform.txmon("report", "verify", str(v1)).stdout


def test_concurrent_builds_of_one_package_make_one_version(packaged):
    """Two regions' refreshes both rebuild the roll-up's package of the day: one version, whichever runs first."""
    from concurrent.futures import ThreadPoolExecutor

    from txmon.reports.package import GLOBAL, build_global

    platform, _ = packaged
    day_folder = platform.settings.report_dir(GLOBAL) / DAY.isoformat()
    shutil.rmtree(day_folder)
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = list(pool.map(lambda _: build_global(platform.settings, DAY), range(4)))
    assert {b.version for b in built} == {1} and sum(b.created for b in built) == 1
    assert sorted(p.name for p in day_folder.iterdir()) == [".lock", "v1"]


def test_the_same_publication_gives_the_same_bytes_and_a_republication_a_new_version(packaged, tmp_path):
    """Last of the module's: it republishes the day."""
    platform, root = packaged
    v1 = root / DAY.isoformat() / "v1"
    first = digests(v1)
    # Built again elsewhere from the same publication: byte-identical files.
    again = tmp_path / "again"
    platform.txmon("report", "--date", DAY.isoformat(), "--region", REGION, "--out", str(again))
    assert digests(again / DAY.isoformat() / "v1") == first
    # Nothing republished: no new version.
    out = platform.txmon("report", "--date", DAY.isoformat(), "--region", REGION).stdout
    assert "already version 1" in out
    # Late data republishes the day, and its refresh builds version 2, which names version 1, kept as it was.
    land(platform, tmp_path, "late", [event("r-5", amount="30000", currency="EUR", region=REGION, event_time=at(13))])
    platform.txmon("materialize", "--date", DAY.isoformat(), "--region", REGION)
    v2 = json.loads((root / DAY.isoformat() / "v2" / "manifest.json").read_text())
    assert v2["supersedes"] == {
        "version": 1,
        "manifest_sha256": hashlib.sha256((v1 / "manifest.json").read_bytes()).hexdigest(),
    }
    assert v2["control_totals"]["suspicious"] == 4
    assert digests(v1) == first
    # Version 1 no longer matches reporting: drift, named, and a non-zero exit.
    stale = platform.txmon("report", "verify", str(v1), check=False)
    assert stale.returncode == 1 and "drift:" in stale.stderr and "tampered" not in stale.stderr
