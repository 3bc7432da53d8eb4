"""Cases and their owners: who is told when a subject of a case is confirmed in an ad.

A case groups subjects (missing persons, venues, partner-list entries) under
an owner. The owner is either one investigator API key (by its name) or a
named team (``team:NAME``, whose members are key names); the owner reads the
case's confirmed matches and acknowledges the alerts its webhooks deliver.
Cases are made and filled by admins (``reunite cases ...``): an owner is a
person entrusted with a family's case, not something a key may claim itself.

A case is named by an opaque ref (``C-`` + 12 hex digits) in every answer and
payload; its ``title`` is an admin's working label and is shown to the owner
and admins only. This module knows nothing of HTTP.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from indexer import text as text_rules
from indexer.store.catalog import Base, Catalog, Subject, utcnow

TEAM_PREFIX = "team:"
MAX_NAME = 120


class Case(Base):
    """One case: an opaque ref, an admin's title and its owner (a key name or ``team:NAME``)."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True, default=lambda: new_case_ref())
    title: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    owner: Mapped[str] = mapped_column(String(MAX_NAME + len(TEAM_PREFIX)), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CaseSubject(Base):
    """A subject's case (a subject belongs to at most one)."""

    __tablename__ = "case_subjects"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), unique=True)


class TeamMember(Base):
    """One key name in one named team."""

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team", "member"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    team: Mapped[str] = mapped_column(String(MAX_NAME), index=True)
    member: Mapped[str] = mapped_column(String(MAX_NAME), index=True)


class CaseError(ValueError):
    """A case operation that cannot be done; ``code`` is stable for clients."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class CaseView:
    id: int
    ref: str
    title: str
    owner: str
    subjects: list[str]  # pseudonyms
    created_at: dt.datetime


def new_case_ref() -> str:
    return "C-" + secrets.token_hex(6)


def _name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME:
        raise CaseError("bad_name", f"{field} must be 1 to {MAX_NAME} characters")
    text_rules.check(value, field)
    return value


def check_owner(value: str) -> str:
    """An owner string: a key name, or ``team:NAME``; CaseError otherwise."""
    if value.startswith(TEAM_PREFIX):
        return TEAM_PREFIX + _name(value[len(TEAM_PREFIX):], "team")
    return _name(value, "owner")


class Cases:
    """Cases, their subjects and teams over one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # --- admin -------------------------------------------------------------------
    def create(self, title: str, owner: str) -> CaseView:
        title, owner = _name(title, "title"), check_owner(owner)
        with self.catalog.session() as s:
            if s.scalar(select(Case.id).where(Case.title == title)) is not None:
                raise CaseError("case_exists", "a case with that title exists")
            case = Case(title=title, owner=owner)
            s.add(case)
            s.flush()
            return self._view(s, case)

    def set_owner(self, case_ref: str, owner: str) -> CaseView:
        owner = check_owner(owner)
        with self.catalog.session() as s:
            case = self._case(s, case_ref)
            case.owner = owner
            s.flush()
            return self._view(s, case)

    def add_subjects(self, case_ref: str, pseudonyms: list[str]) -> CaseView:
        """Put subjects in the case; a subject already in another case is refused (one owner each)."""
        with self.catalog.session() as s:
            case = self._case(s, case_ref)
            for pseudonym in pseudonyms:
                subject = s.scalar(select(Subject).where(Subject.pseudonym == pseudonym))
                if subject is None:
                    raise CaseError("subject_not_found", f"no subject {text_rules.displayable(pseudonym)}")
                link = s.scalar(select(CaseSubject).where(CaseSubject.subject_id == subject.id))
                if link is not None and link.case_id != case.id:
                    raise CaseError("subject_in_another_case",
                                    f"subject {pseudonym} already belongs to another case")
                if link is None:
                    s.add(CaseSubject(case_id=case.id, subject_id=subject.id))
            s.flush()
            return self._view(s, case)

    def own_subject(self, pseudonym: str, owner: str) -> CaseView:
        """Give an enrolled subject an owner at enrolment: its own case, titled by its pseudonym.

        The pseudonym is opaque, so the title names no one. A subject already in a case keeps
        it when the owner is the same and is refused otherwise (one owner each; an admin moves
        it with ``cases owner``), so enrolling again never steals a case.
        """
        owner = check_owner(owner)
        with self.catalog.session() as s:
            subject = s.scalar(select(Subject).where(Subject.pseudonym == pseudonym))
            if subject is None:
                raise CaseError("subject_not_found", f"no subject {text_rules.displayable(pseudonym)}")
            case = self.case_of_subject(s, subject.id)
            if case is not None:
                if case.owner != owner:
                    raise CaseError("subject_in_another_case",
                                    f"subject {pseudonym} already belongs to a case with another owner")
                return self._view(s, case)
            case = Case(title=f"subject {pseudonym}"[:MAX_NAME], owner=owner)
            s.add(case)
            s.flush()
            s.add(CaseSubject(case_id=case.id, subject_id=subject.id))
            s.flush()
            return self._view(s, case)

    def remove_subject(self, case_ref: str, pseudonym: str) -> CaseView:
        with self.catalog.session() as s:
            case = self._case(s, case_ref)
            subject_id = s.scalar(select(Subject.id).where(Subject.pseudonym == pseudonym))
            if subject_id is not None:
                s.execute(delete(CaseSubject).where(CaseSubject.case_id == case.id,
                                                    CaseSubject.subject_id == subject_id))
            return self._view(s, case)

    def add_member(self, team: str, member: str) -> None:
        team, member = _name(team, "team"), _name(member, "member")
        with self.catalog.session() as s:
            if s.scalar(select(TeamMember.id).where(TeamMember.team == team,
                                                    TeamMember.member == member)) is None:
                s.add(TeamMember(team=team, member=member))

    def remove_member(self, team: str, member: str) -> None:
        with self.catalog.session() as s:
            s.execute(delete(TeamMember).where(TeamMember.team == team, TeamMember.member == member))

    # --- reading -----------------------------------------------------------------
    def list(self, owned_by: str | None = None) -> list[CaseView]:
        """Every case, or only those ``owned_by`` (a key name) owns directly or through a team."""
        with self.catalog.session() as s:
            query = select(Case).order_by(Case.id)
            if owned_by is not None:
                query = query.where(Case.owner.in_(self.owners_of(s, owned_by)))
            return [self._view(s, c) for c in s.scalars(query)]

    def get(self, case_ref: str, owned_by: str | None = None) -> CaseView:
        """One case; with ``owned_by``, a case that key does not own is not found (like a missing one)."""
        with self.catalog.session() as s:
            case = self._case(s, case_ref)
            if owned_by is not None and case.owner not in self.owners_of(s, owned_by):
                raise CaseError("case_not_found", "no case by that ref")
            return self._view(s, case)

    @staticmethod
    def owners_of(s: Session, key_name: str) -> list[str]:
        """The owner strings ``key_name`` answers for: itself and each of its teams."""
        teams = s.scalars(select(TeamMember.team).where(TeamMember.member == key_name))
        return [key_name, *(TEAM_PREFIX + t for t in teams)]

    @staticmethod
    def case_of_subject(s: Session, subject_id: int | None) -> Case | None:
        if subject_id is None:
            return None
        return s.scalar(select(Case).join(CaseSubject, CaseSubject.case_id == Case.id)
                        .where(CaseSubject.subject_id == subject_id))

    @staticmethod
    def _case(s: Session, case_ref: str) -> Case:
        case = s.scalar(select(Case).where(Case.ref == case_ref))
        if case is None:
            raise CaseError("case_not_found", "no case by that ref")
        return case

    @staticmethod
    def _view(s: Session, case: Case) -> CaseView:
        pseudonyms = list(s.scalars(select(Subject.pseudonym)
                                    .join(CaseSubject, CaseSubject.subject_id == Subject.id)
                                    .where(CaseSubject.case_id == case.id).order_by(Subject.id)))
        return CaseView(case.id, case.ref, case.title, case.owner, pseudonyms, case.created_at)
