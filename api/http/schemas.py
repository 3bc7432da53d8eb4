"""Request and response bodies of the HTTP API (the OpenAPI schema is built from these).

Field limits are part of the contract: they keep hostile input bounded before
any work is done, and tell generated clients (and schemathesis) exactly what
the server accepts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Ids travel as SQLite integers: anything larger is refused before it reaches the catalog.
MAX_ID = 2**62
Name = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
Evidence = dict[str, Any]


class ThresholdPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: float = Field(ge=0, le=10_000)
    review: float = Field(ge=0, le=10_000)


class BankPolicy(BaseModel):
    """Per-bank settings; anything not set follows the defaults."""

    model_config = ConfigDict(extra="forbid")
    thresholds: dict[str, ThresholdPair] | None = None
    second_review: bool | None = Field(
        default=None, description="Two different reviewers must confirm (default: yes for missing_person).")
    partner_lookup: bool | None = Field(
        default=None, description="Partners may look hashes up in this bank (default: yes, but no for "
                    "missing_person: a hit would tell a partner the hash is a missing person).")
    signals: list[str] | None = Field(
        default=None, min_length=1, max_length=20,
        description="Signal families or names to index (default: per kind, as `reunite index`).")
    encrypt: bool | None = Field(
        default=None, description="Encrypt photos at rest even though the bank holds no people.")
    watches: list[str] | None = Field(
        default=None, max_length=200,
        description="missing_person, venue and hashes banks: the ads banks this bank watches (every new ad "
                    "is matched against it; default: every ads bank; []: none).")
    keep_photos: bool | None = Field(
        default=None, description="ads banks: keep each ad's photo for reviewers (default: yes).")
    face_search: bool | None = Field(
        default=None, description="Search this bank's faces when matching (default: yes for missing_person "
                    "and ads banks, no otherwise). Outside missing_person banks a face alone reaches at most "
                    "review.")


class BankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name
    kind: Literal["ads", "venue", "missing_person", "hashes"]
    policy: BankPolicy = Field(default_factory=BankPolicy)


class BankOut(BaseModel):
    name: str
    kind: str
    policy: dict[str, Any]
    items: int
    created_at: str | None


class BankList(BaseModel):
    banks: list[BankOut]


class EnrollRecord(BaseModel):
    """The JSON part of an enrollment (the ``record`` form field); the same columns as `reunite enroll`.

    ``label`` groups photos into one subject and must be a case code, not a
    name: it is stored in clear (unique per bank) and shown to admins and
    reviewers only. Missing persons need the four consent fields; anything
    personal goes into them or into ``personal``, which is sealed.
    """

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=300, pattern=r"\S")
    consent_by: str | None = Field(default=None, max_length=200)
    consent_date: str | None = Field(default=None, max_length=40, description="ISO date")
    consent_expires: str | None = Field(default=None, max_length=40, description="ISO date or date-time")
    case_ref: str | None = Field(default=None, max_length=200)
    case_owner: str | None = Field(default=None, max_length=130, description="the investigator key name "
                                   "(or team:NAME) alerted when this subject is confirmed in an ad")
    date_of_birth: str | None = Field(default=None, max_length=10, description="missing_person: ISO date "
                                      "(sealed); under 18 the minors' regime applies")
    minor: bool | None = Field(default=None, description="missing_person: a child whose date of birth "
                               "is unknown (sealed); protected until enrolled again with date_of_birth")
    personal: dict[str, str] = Field(
        default_factory=dict, max_length=20,
        description="missing_person: further personal fields (sealed), e.g. name, age")
    name: str | None = Field(default=None, max_length=200, description="venue: its name")
    address: str | None = Field(default=None, max_length=500, description="venue: its address")
    room: str | None = Field(default=None, max_length=100, description="venue: the room")
    region: str | None = Field(default=None, max_length=120, description="venue: its region (free text, "
                               "e.g. an ISO 3166-2 code): what `reunite stats --region` groups by")


class EnrollOut(BaseModel):
    subject: SubjectOut
    photos_added: int
    already_enrolled: int
    without_face: int


class PhotoOut(BaseModel):
    item: int
    width: int
    height: int
    format: str


class SubjectOut(BaseModel):
    pseudonym: str
    bank: str
    kind: str
    label: str | None
    attributes: dict[str, Any]
    personal: dict[str, Any] | None
    consent_expires: str | None
    minor_policy: bool = Field(default=False, description="a protected child (the minors' regime applies "
                               "today); never an age or a date of birth, which stay sealed")
    photos: list[PhotoOut]
    created_at: str | None


class SubjectList(BaseModel):
    total: int
    offset: int
    limit: int
    subjects: list[SubjectOut]


class WithdrawalOut(BaseModel):
    withdrawn: str
    photos: int
    vectors: int
    candidates: int


class IngestResult(BaseModel):
    index: int
    sha256: str | None = None
    item: int | None = None
    created: bool | None = None
    error: str | None = None
    detail: str | None = None


class IngestBatchOut(BaseModel):
    bank: str
    indexed: int
    already_indexed: int
    failed: int
    results: list[IngestResult]


class MatchCandidate(BaseModel):
    bank: str
    pseudonym: str | None
    label: str | None
    item: int
    score: float
    decision: str
    evidence: Evidence
    candidate_id: int | None
    minor_policy: bool = Field(default=False, description="a protected child: at most review, two "
                               "reviewers, a written reason to reveal the photo (never an age)")


class MatchOut(BaseModel):
    query_sha256: str
    candidates: list[MatchCandidate]


class HashQuery(BaseModel):
    """A partner's lookup: hashes of an image they hold, never the image."""

    model_config = ConfigDict(extra="forbid")
    hashes: dict[str, str] = Field(
        min_length=1, max_length=10,
        description="signal name -> hex digest, e.g. {\"pdq\": \"<64 hex digits>\"}")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    banks: list[str] | None = Field(default=None, max_length=50)
    top: int = Field(default=10, ge=1, le=100)


class PartnerHit(BaseModel):
    ref: str
    bank: str
    score: float
    decision: str
    evidence: Evidence


class HashMatchOut(BaseModel):
    hits: list[PartnerHit]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["confirm", "reject", "escalate"]
    note: str = Field(default="", max_length=4000)


class DecisionOut(BaseModel):
    reviewer: str | None
    action: str
    state_after: str
    note: str | None
    at: str | None


class CandidateOut(BaseModel):
    id: int
    bank: str
    kind: str
    pseudonym: str | None
    label: str | None
    personal: dict[str, Any] | None
    ref_item: int
    query_sha256: str
    has_query_image: bool
    score: float
    tier: str
    evidence: Evidence
    context: dict[str, Any] | None = Field(
        default=None, description="Found by watching: the ad (bank, item, ad id, site, url, posted_at).")
    state: str
    required_reviews: int
    minor_policy: bool = False
    created_at: str | None
    updated_at: str | None
    decisions: list[DecisionOut]
    blind_review: bool = Field(
        default=False, description="Blind second review: earlier decisions are hidden from you until "
                                   "you decide (the candidate awaits its second reviewer).")
    decisions_hidden: int = Field(default=0, description="How many decisions the blind review hides.")
    reveal_before_confirm: bool = Field(
        default=False, description="Confirming needs the reference photo revealed first by the one "
                                   "confirming: GET /v1/subjects/{pseudonym}/photos/{ref_item} (audited).")
    revealed: bool | None = Field(
        default=None, description="Whether you have revealed the reference photo (None in lists).")


class CandidateList(BaseModel):
    total: int
    offset: int
    limit: int
    candidates: list[CandidateOut]


class AuditEventOut(BaseModel):
    seq: int
    at: str
    actor: str
    role: str
    action: str
    object: str
    result: str
    detail: dict[str, Any]
    hash: str


class AuditList(BaseModel):
    total: int
    events: list[AuditEventOut]


class AuditVerifyOut(BaseModel):
    ok: bool
    events: int
    problems: list[str]


class WhoAmI(BaseModel):
    name: str
    role: str


class Health(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
