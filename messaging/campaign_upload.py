"""An uploaded audience list for a draft campaign: a CSV file (as spreadsheets save it) with a phone
number column and any others, whose values can fill template parameters (`{"column": "order_id"}`).

Only people who are already contacts can be listed: a campaign needs consent on record, and a number
we have never heard from has none. The upload reports how many rows it listed, how many numbers are
not contacts, duplicates, and the lines it could not read (line numbers only: the summary is stored
with the campaign, and numbers that are not contacts' are nobody's business to keep).
"""

import csv
import io
import re
from dataclasses import asdict, dataclass, field
from typing import IO

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from messaging.contact_csv import CsvFileRejected, csv_file_text, csv_unneutralize
from messaging.models import Campaign, CampaignAudienceMember, Contact
from messaging.phone import phone_normalize

MAX_LISTED_ROWS = 200_000
MAX_EXTRA_COLUMNS = 20
MAX_VALUE_LENGTH = 1024
PHONE_COLUMNS = ("phone_number", "phone", "whatsapp", "mobile", "to_number")
#: Lines the summary keeps (the rest are counted).
INVALID_LINES_KEPT = 20
LOOKUP_BATCH = 1000


@dataclass
class AudienceUpload:
    file_name: str
    uploaded_at: str
    uploaded_by: str
    rows: int = 0
    listed: int = 0
    not_contacts: int = 0
    duplicates: int = 0
    invalid: int = 0
    invalid_lines: list[dict] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # besides the phone number's


def _column_name(raw: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", raw.strip().lower()).strip("_")


def _reader(text: str) -> tuple[csv.reader, list[str], int]:
    """A reader positioned after the header, the header's column names, and the phone column's index."""
    first_line = re.split(r"\r\n|\r|\n", text.lstrip("\r\n"), maxsplit=1)[0]
    for delimiter in (",", ";", "\t"):
        names = [_column_name(cell) for cell in next(csv.reader([first_line], delimiter=delimiter))]
        phone = next((i for i, name in enumerate(names) if name in PHONE_COLUMNS), None)
        if phone is not None:
            reader = csv.reader(io.StringIO(text.lstrip("\r\n"), newline=""), delimiter=delimiter)
            next(reader)
            return reader, names, phone
    raise CsvFileRejected(
        f"The first line must name the columns, one of them the phone number ({', '.join(PHONE_COLUMNS)})."
    )


@transaction.atomic
def campaign_audience_upload(
    *, campaign: Campaign, file: IO[bytes] | IO[str], user, file_name: str = "", region: str | None = None
) -> AudienceUpload:
    """Replace a draft campaign's audience with the listed contacts (raises ValidationError with a
    message for people when the file cannot be used)."""
    campaign = Campaign.objects.select_for_update(of=("self",)).get(pk=campaign.pk)
    if campaign.status != Campaign.Status.DRAFT:
        raise ValidationError("Only a draft campaign's audience can be changed.", code="not_a_draft")
    try:
        text = csv_file_text(file)
        reader, names, phone_index = _reader(text)
    except CsvFileRejected as exc:
        raise ValidationError(str(exc), code="invalid_file") from exc
    extra = [(i, name) for i, name in enumerate(names) if i != phone_index and name]
    if len(extra) > MAX_EXTRA_COLUMNS:
        raise ValidationError(
            "The file has %(count)s columns besides the phone number; at most %(max)s.",
            code="too_many_columns",
            params={"count": len(extra), "max": MAX_EXTRA_COLUMNS},
        )
    summary = AudienceUpload(
        file_name=file_name[:200],
        uploaded_at=timezone.now().isoformat(timespec="seconds"),
        uploaded_by=user.get_username() if user else "",
        columns=[name for _, name in extra],
    )
    listed: dict[str, dict] = {}  # E.164 → the row's other values, in file order
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            summary.rows += 1
            if summary.rows > MAX_LISTED_ROWS:
                raise ValidationError(
                    "The file lists more than %(max)s people; split it into several campaigns.",
                    code="too_many_rows",
                    params={"max": f"{MAX_LISTED_ROWS:,}"},
                )
            line = reader.line_num
            raw = cells[phone_index].strip() if phone_index < len(cells) else ""
            try:
                e164 = phone_normalize(raw, region=region)
            except ValidationError:
                summary.invalid += 1
                if len(summary.invalid_lines) < INVALID_LINES_KEPT:
                    summary.invalid_lines.append({"line": line, "error": "not a valid phone number"})
                continue
            if e164 in listed:
                summary.duplicates += 1
                continue
            listed[e164] = {
                name: csv_unneutralize(cells[i].strip())[:MAX_VALUE_LENGTH]
                for i, name in extra
                if i < len(cells) and cells[i].strip()
            }
    except csv.Error as exc:
        raise ValidationError(
            "Line %(line)s is not valid CSV (%(error)s).",
            code="invalid_file",
            params={"line": reader.line_num, "error": exc},
        ) from exc

    numbers = list(listed)
    members = []
    for start in range(0, len(numbers), LOOKUP_BATCH):
        batch = numbers[start : start + LOOKUP_BATCH]
        found = dict(Contact.objects.filter(phone_number__in=batch).values_list("phone_number", "pk"))
        members += [
            CampaignAudienceMember(campaign=campaign, contact_id=found[n], values=listed[n])
            for n in batch
            if n in found
        ]
        summary.not_contacts += sum(1 for n in batch if n not in found)
    CampaignAudienceMember.objects.filter(campaign=campaign).delete()
    CampaignAudienceMember.objects.bulk_create(members, batch_size=2000)
    summary.listed = len(members)
    campaign.audience_source = Campaign.AudienceSource.UPLOAD
    campaign.audience_upload_summary = asdict(summary)
    campaign.save(update_fields=["audience_source", "audience_upload_summary", "updated_at"])
    return summary
