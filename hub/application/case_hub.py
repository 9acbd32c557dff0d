"""CaseHub: the site's commands (receive a case, take a step), over the site's event store.

One instance per site. Each command loads one case, lets the domain decide, and saves the new
events atomically; a receipt stores the case and its uniqueness claims in one transaction, and
``execute_batch`` many commands in one (group commit builds on it). Reads live elsewhere: the read
model (read_model.py), the history view (history.py), deadline clocks (case_clocks.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from hub.application.commands import CaseCommand, ReceiveCase
from hub.application.ports import Catalogue, Regions, Router, StoreObserver
from hub.application.site_store import SiteStore
from hub.domain.case import Case
from hub.domain.claims import UniqueClaim, claim_id
from hub.domain.errors import ConcurrentUpdate, FieldViolation, HubError, InvalidInput, RuleViolation
from hub.domain.identifiers import LOCAL_TZ, CaseNumberAllocator, case_id_time, new_case_id


@dataclass(frozen=True)
class Intake:
    """What receiving a case decided: the case, whether it is new, and (if new) its unsaved claims."""

    case: Case
    created: bool
    claims: tuple[UniqueClaim, ...] = ()


class CaseHub(SiteStore):
    """The commands of one site (its region code is ``site``)."""

    name = "tongban"  # the library names tables after the concrete class: stored data keeps this name

    def __init__(
        self,
        *,
        site: str,
        catalogue: Catalogue,
        regions: Regions,
        env: Mapping[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
        router: Router | None = None,
        snapshot_interval: int = 0,
        also_snapshot: Sequence[type[Aggregate]] = (),
        observer: StoreObserver | None = None,
    ) -> None:
        super().__init__(site=site, env=env, snapshot_interval=snapshot_interval, also_snapshot=also_snapshot,
                         observer=observer)
        self.catalogue = catalogue
        self.regions = regions
        self.router = router
        self.now = now or (lambda: datetime.now(UTC))
        self.numbers = CaseNumberAllocator(site)

    # ------------------------------------------------------------------ commands
    def receive(self, cmd: ReceiveCase) -> tuple[Case, bool]:
        """Open a case; a repeated request id returns the case it opened (``created`` False)."""
        intake = self.prepare_receive(cmd)
        for _attempt in range(5):
            if not intake.created:
                return intake.case, False
            try:
                self.save(intake.case, *intake.claims)
            except IntegrityError:  # a repeat stored meanwhile is found; else the number was taken: mint another
                intake = self.prepare_receive(cmd)
                continue
            return intake.case, True
        raise HubError("无法分配办件编号，请稍后重试")

    def prepare_receive(self, cmd: ReceiveCase, assume_new: bool = False) -> Intake:
        """Everything ``receive`` decides before writing: the case a repeated request id opened, or a
        new, unsaved case with the claims that keep its request id and case number unique.

        With ``assume_new`` the request id is not looked up: a repeat then shows as an IntegrityError
        when its claim is saved (group commit does this and commits the batch one by one)."""
        self._check_receipt(cmd)
        request_key = f"{self.site}/{cmd.request_id}"
        fingerprint = hashlib.sha256(cmd.model_dump_json(exclude={"request_id"}).encode()).hexdigest()
        existing = None if assume_new else self._case_for_request(request_key, fingerprint)
        if existing is not None:
            return Intake(existing, created=False)
        item = self.catalogue.get(cmd.item_code)
        handling_site, co_sites, route = cmd.handling_site, list(cmd.co_handling_sites), None
        if self.router is not None:
            decided = self.router.route(
                item_code=cmd.item_code, mode=cmd.mode, handling_region=cmd.handling_site,
                co_handling_regions=cmd.co_handling_sites, on=self.now().astimezone(LOCAL_TZ).date(),
            )
            handling_site, co_sites, route = decided.handling_site, list(decided.co_handling_sites), decided.as_data()
        case_id = new_case_id()
        number = self.numbers.next(case_id_time(case_id))
        case = Case.receive(
            case_id=case_id,
            case_number=number,
            request_id=cmd.request_id,
            item=item,
            mode=cmd.mode,
            handling_site=handling_site,
            co_handling_sites=co_sites,
            applicant=cmd.applicant.to_domain(),
            materials=[m.to_domain() for m in cmd.materials],
            applicant_consent=cmd.applicant_consent,
            identity_verified=cmd.identity_verified,
            note=cmd.note,
            actor=cmd.actor.to_domain(),
            route=route,
        )
        claims = (
            UniqueClaim.make("request", request_key, case_id, fingerprint),
            UniqueClaim.make("case-number", number, case_id),
        )
        return Intake(case, created=True, claims=claims)

    def execute(self, cmd: CaseCommand) -> Case:
        """Apply one step to one case. Nothing is written unless every rule passes."""
        case = self.apply_command(cmd, {})
        try:
            self.save(case)
        except IntegrityError:
            raise ConcurrentUpdate(str(cmd.case_id), cmd.expected_version, None) from None
        return case

    def execute_batch(self, cmds: Sequence[CaseCommand]) -> list[Case]:
        """Apply several commands and store all their events in one transaction, or none of them.

        Commands on the same case see each other's effects in order. This is the write path bulk
        loaders build on: one transaction, many cases (group commit, in group_commit.py, is the
        same with each command's failure kept to its own caller).
        """
        loaded: dict[UUID, Case] = {}
        touched = [self.apply_command(cmd, loaded) for cmd in cmds]
        try:
            self.save(*loaded.values())
        except IntegrityError:
            raise ConcurrentUpdate(",".join(str(i) for i in loaded), None, None) from None
        return touched

    def apply_command(self, cmd: CaseCommand, loaded: dict[UUID, Case]) -> Case:
        """Apply one command to its case, loading it once into ``loaded`` (unsaved: the caller saves).

        A command that breaks a rule raises before recording anything, so the case (and any other
        command's events already on it) is left as it was.
        """
        case = loaded.get(cmd.case_id)
        if case is None:
            case = loaded[cmd.case_id] = self.get_case(cmd.case_id)
        if cmd.expected_version is not None and case.version != cmd.expected_version:
            raise ConcurrentUpdate(str(cmd.case_id), cmd.expected_version, case.version)
        cmd.apply(case, self.site)
        return case

    def _check_receipt(self, cmd: ReceiveCase) -> None:
        problems: list[FieldViolation] = []
        if cmd.actor.site != self.site:
            problems.append(FieldViolation("actor.site", f"收件人须属于本站点 {self.site}"))
        if cmd.item_code not in self.catalogue:
            problems.append(FieldViolation("item_code", f"未知事项编码 {cmd.item_code}"))
        for path, code in [("handling_site", cmd.handling_site)] + [
            (f"co_handling_sites.{i}", c) for i, c in enumerate(cmd.co_handling_sites)
        ]:
            if not self.regions.is_valid(code):
                problems.append(FieldViolation(path, f"未知或已撤销的行政区划代码 {code}"))
        if problems:
            raise InvalidInput(problems)
        if cmd.handling_site == self.site:
            raise RuleViolation("SAME_PLACE", "办理地与收件地相同，无需通办")

    def _case_for_request(self, request_key: str, fingerprint: str) -> Case | None:
        claim = self.find(claim_id("request", request_key), UniqueClaim)
        if claim is None:
            return None
        if claim.fingerprint != fingerprint:
            raise RuleViolation(
                "REQUEST_ID_REUSED",
                f"请求编号 {request_key.split('/', 1)[1]} 已用于另一份不同的收件请求",
                {"case_id": claim.case_id},
            )
        return self.get_case(UUID(claim.case_id))
