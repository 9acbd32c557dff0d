"""`tongban`: run a site, and drive cases against a running site over gRPC.

Who acts is whoever signed in: `tongban login --staff-id X` stores a token (adapters/cli/token_file.py)
and every `tongban case ...` sends it; the site records each step under that account. Errors are one
line on stderr with a non-zero exit code: 2 bad input, 3 not found, 4 rule violation, 5 concurrent
update, 6 site unreachable, 7 not logged in / login failed or expired, 8 not permitted.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.auth.client import login as login_call
from adapters.auth.client import signed_channel
from adapters.cli import render, token_file
from adapters.cli.audit import audit
from adapters.cli.certs import certs
from adapters.cli.console import err, out
from adapters.cli.exchange import exchange
from adapters.cli.nats_config import nats_config
from adapters.cli.reconcile import reconcile
from adapters.cli.staff import read_password, staff
from adapters.grpc.errors import error_info, field_violations
from adapters.grpc.rpc import CASE_SERVICE, request_type, unary
from adapters.grpc.translate import wire_enum
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.lifecycle import CaseState
from hub.domain.values import (
    ApplicantKind,
    IdType,
    IssueKind,
    LabelledEnum,
    Mode,
    Outcome,
    Party,
    ProcedureKind,
    RectificationOutcome,
    ResultMethod,
    Role,
)
from tongban.v1 import auth_pb2, auth_pb2_grpc
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc

EXIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 2,
    grpc.StatusCode.NOT_FOUND: 3,
    grpc.StatusCode.FAILED_PRECONDITION: 4,
    grpc.StatusCode.ABORTED: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
    grpc.StatusCode.UNAUTHENTICATED: 7,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 7,
    grpc.StatusCode.PERMISSION_DENIED: 8,
}
NOT_LOGGED_IN = 7
DEFAULT_TARGET = "127.0.0.1:7400"


def choice(enum: type[LabelledEnum]) -> click.Choice:
    return click.Choice([m.value for m in enum])


def wire(enum: type[LabelledEnum], descriptor: Any, value: str | None) -> int:
    return wire_enum(descriptor, enum(value)) if value else 0


def open_channel(target: str, ca: str | None) -> grpc.Channel:
    """Plaintext (the embedded demo), or TLS verifying the site against ``ca``."""
    if not ca:
        return grpc.insecure_channel(target)
    with open(ca, "rb") as handle:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=handle.read()))


class Client:
    """CaseService over one channel carrying the signed-in token, with a deadline on every call and a
    request id for the logs."""

    def __init__(self, target: str, timeout: float, token: str, ca: str | None = None) -> None:
        self.channel = signed_channel(open_channel(target, ca), token)
        self.timeout = timeout

    def call(self, rpc: str, request: Any) -> Any:
        method = unary(self.channel, CASE_SERVICE, rpc)
        return method(request, timeout=self.timeout, metadata=(("x-request-id", uuid.uuid4().hex),))


def fail(error: grpc.RpcError) -> None:
    code = error.code()
    message = error.details() or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        message = f"无法连接站点（{code.name}）：{message}"
    err.print(f"[red]错误[/]：{message}", highlight=False)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        for field, description in field_violations(error).items():
            err.print(f"  - {field}: {description}", highlight=False)
    elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
                  grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        info = error_info(error)
        if info is not None:
            err.print(f"  ({info.reason})", highlight=False)
    sys.exit(EXIT_CODES.get(code, 1))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", envvar="TONGBAN_TARGET", default=None,
              help=f"站点 gRPC 地址（默认：登录时的地址，或 {DEFAULT_TARGET}）")
@click.option("--ca", envvar="TONGBAN_CA", default=None, type=click.Path(dir_okay=False),
              help="员工端口启用 TLS 时用于校验站点证书的 CA 文件")
@click.option("--timeout", default=10.0, show_default=True, help="每次调用的超时（秒）")
@click.pass_context
def main(ctx: click.Context, target: str | None, ca: str | None, timeout: float) -> None:
    """通办枢纽 Tongban Hub."""
    ctx.obj = {"target": target, "ca": ca, "timeout": timeout}


@main.command()
@click.option("--staff-id", required=True, help="工号")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取密码（一行）")
@click.pass_context
def login(ctx: click.Context, staff_id: str, password_stdin: bool) -> None:
    """登录站点，保存令牌（$TONGBAN_TOKEN_FILE 或 ~/.config/tongban/token.json）。"""
    target = ctx.obj["target"] or DEFAULT_TARGET
    password = read_password(password_stdin)
    try:
        response = login_call(open_channel(target, ctx.obj["ca"]), staff_id, password, ctx.obj["timeout"])
    except grpc.RpcError as error:
        fail(error)
    path = token_file.save(token_file.StoredToken(target, response.token,
                                                  response.expires_at.ToDatetime(tzinfo=UTC), staff_id))
    actor = response.actor
    click.echo(f"已登录 {actor.staff_id}（{actor.name}，{Role(_role_value(actor.role)).label}，站点 {actor.site}），"
               f"有效至 {response.expires_at.ToDatetime(tzinfo=UTC).astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}；令牌 {path}")


@main.command()
def logout() -> None:
    """删除保存的令牌。"""
    token_file.token_path().unlink(missing_ok=True)
    click.echo("已退出登录")


@main.command()
@click.pass_context
def whoami(ctx: click.Context) -> None:
    """显示当前登录身份（由站点核验）。"""
    client = _client(ctx)
    try:
        me = auth_pb2_grpc.AuthServiceStub(client.channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=client.timeout)
    except grpc.RpcError as error:
        fail(error)
    click.echo(f"{me.actor.staff_id}\t{me.actor.name}\t{_role_value(me.actor.role)}\t{me.actor.site}\t{me.via}")


def _role_value(number: int) -> str:
    return pb.Role.Name(number).removeprefix("ROLE_").lower() if number else ""


def _client(ctx: click.Context) -> Client:
    """A client with the stored token: exit 7 when nobody is logged in or the token has expired."""
    stored = token_file.load()
    if stored is None or stored.expired:
        err.print("[red]错误[/]：未登录或登录已过期，请先运行 tongban login --staff-id 工号", highlight=False)
        sys.exit(NOT_LOGGED_IN)
    return Client(ctx.obj["target"] or stored.target, ctx.obj["timeout"], stored.token, ctx.obj["ca"])


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="站点配置文件 (TOML)")
@click.option("--listen", default=None, help="覆盖配置中的监听地址，如 127.0.0.1:0")
@click.option("--port-file", type=click.Path(dir_okay=False), default=None, help="启动后把端口写入此文件")
def serve(config_path: str, listen: str | None, port_file: str | None) -> None:
    """运行一个站点（读取配置文件）。"""
    from adapters.serve import run

    sys.exit(run(config_path, listen, port_file))


@main.group()
@click.option("--json", "as_json", is_flag=True, help="输出 JSON（供脚本使用）")
@click.pass_context
def case(ctx: click.Context, as_json: bool) -> None:
    """办件操作（以登录身份办理：tongban login）。"""
    ctx.obj.update(client=_client(ctx), json=as_json)


def _run(ctx: click.Context, rpc: str, request: Any) -> Any:
    try:
        return ctx.obj["client"].call(rpc, request)
    except grpc.RpcError as error:
        fail(error)


def _show(ctx: click.Context, response: Any) -> None:
    if ctx.obj["json"]:
        click.echo(render.as_json(response))
    else:
        entries = response.entries if isinstance(response, svc.GetCaseHistoryResponse) else None
        render.print_case(out, response.case, entries)


@case.command("receive")
@click.option("--item", "item_code", required=True, help="事项编码，如 KSTB-005")
@click.option("--mode", type=choice(Mode), default=Mode.PROXY.value, show_default=True)
@click.option("--handling-site", required=True, help="办理地行政区划代码")
@click.option("--co-site", "co_sites", multiple=True, help="联办地（多地联办，可多次）")
@click.option("--applicant-kind", type=choice(ApplicantKind), default=ApplicantKind.PERSON.value, show_default=True)
@click.option("--name", "applicant_name", required=True, help="申请人姓名或单位名称")
@click.option("--id-type", type=choice(IdType), default=IdType.RESIDENT_ID.value, show_default=True)
@click.option("--id-number", required=True, help="证件号码")
@click.option("--phone", default="")
@click.option("--address", default="")
@click.option("--material", "materials", multiple=True, help="收取的材料（可多次）")
@click.option("--consent/--no-consent", default=False, help="申请人已授权代收")
@click.option("--identity-verified/--identity-not-verified", default=False, help="已完成身份核验")
@click.option("--request-id", default=None, help="幂等请求编号（默认自动生成）")
@click.option("--note", default="")
@click.pass_context
def receive(ctx: click.Context, **o: Any) -> None:
    """收件：在本窗口为外地事项收件。"""
    request = svc.ReceiveCaseRequest(
        request_id=o["request_id"] or uuid.uuid4().hex,
        item_code=o["item_code"],
        mode=wire(Mode, pb.Mode.DESCRIPTOR, o["mode"]),
        handling_site=o["handling_site"],
        co_handling_sites=list(o["co_sites"]),
        applicant=pb.Applicant(
            kind=wire(ApplicantKind, pb.ApplicantKind.DESCRIPTOR, o["applicant_kind"]),
            name=o["applicant_name"],
            id_type=wire(IdType, pb.IdType.DESCRIPTOR, o["id_type"]),
            id_number=o["id_number"],
            phone=o["phone"],
            address=o["address"],
        ),
        materials=[pb.Material(name=m, copies=1) for m in o["materials"]],
        applicant_consent=o["consent"],
        identity_verified=o["identity_verified"],
        note=o["note"],
    )
    _show(ctx, _run(ctx, "ReceiveCase", request))


# name, RPC, help, options, how options become request fields
Fields = Callable[[dict[str, Any]], dict[str, Any]]
STEPS: list[tuple[str, str, str, list[click.Option], Fields]] = [
    ("refuse-intake", "RefuseIntake", "收件不予接收",
     [click.Option(["--reason", "reasons"], multiple=True, required=True)], lambda o: {"reasons": list(o["reasons"])}),
    ("forward", "ForwardCase", "流转到办理地",
     [click.Option(["--courier"], default=""), click.Option(["--tracking-number"], default="")],
     lambda o: {"courier": o["courier"], "tracking_number": o["tracking_number"]}),
    ("sign", "SignCase", "办理地接件", [], lambda o: {}),
    ("request-supplement", "RequestSupplement", "一次性告知补正",
     [click.Option(["--missing"], multiple=True, required=True), click.Option(["--note"], default="")],
     lambda o: {"missing_materials": list(o["missing"]), "note": o["note"]}),
    ("submit-supplement", "SubmitSupplement", "提交补正材料",
     [click.Option(["--material"], multiple=True, required=True)],
     lambda o: {"materials": [pb.Material(name=m, copies=1) for m in o["material"]]}),
    ("reject", "RejectCase", "不予受理",
     [click.Option(["--reason"], required=True), click.Option(["--notice-number"], default="")],
     lambda o: {"reason": o["reason"], "notice_number": o["notice_number"]}),
    ("return", "ReturnCase", "退回收件地", [click.Option(["--reason"], required=True)],
     lambda o: {"reason": o["reason"]}),
    ("accept", "AcceptCase", "受理并承诺时限",
     [click.Option(["--days"], type=int, default=None, help="承诺办结工作日（默认按目录）")],
     lambda o: {} if o["days"] is None else {"committed_days": o["days"]}),
    ("suspend", "SuspendCase", "中止（暂停计时）", [click.Option(["--reason"], required=True)],
     lambda o: {"reason": o["reason"]}),
    ("resume", "ResumeCase", "恢复办理", [], lambda o: {}),
    ("start-special", "StartSpecialProcedure", "启动特别程序（暂停计时）",
     [click.Option(["--kind"], type=choice(ProcedureKind), required=True), click.Option(["--reason"], default="")],
     lambda o: {"kind": wire(ProcedureKind, pb.ProcedureKind.DESCRIPTOR, o["kind"]), "reason": o["reason"]}),
    ("end-special", "EndSpecialProcedure", "特别程序结束", [click.Option(["--conclusion"], default="")],
     lambda o: {"conclusion": o["conclusion"]}),
    ("decide", "DecideCase", "办结（作出决定）",
     [click.Option(["--outcome"], type=choice(Outcome), required=True), click.Option(["--reason"], default=""),
      click.Option(["--decision-number"], default="")],
     lambda o: {"outcome": wire(Outcome, pb.Outcome.DESCRIPTOR, o["outcome"]), "reason": o["reason"],
                "decision_number": o["decision_number"]}),
    ("dispatch", "DispatchResult", "出件",
     [click.Option(["--method"], type=choice(ResultMethod), required=True),
      click.Option(["--licence-reference"], default=""), click.Option(["--courier"], default=""),
      click.Option(["--tracking-number"], default="")],
     lambda o: {"method": wire(ResultMethod, pb.ResultMethod.DESCRIPTOR, o["method"]),
                "licence_reference": o["licence_reference"], "courier": o["courier"],
                "tracking_number": o["tracking_number"]}),
    ("deliver", "ConfirmDelivery", "确认送达", [click.Option(["--received-by"], default="")],
     lambda o: {"received_by": o["received_by"]}),
    ("archive", "ArchiveCase", "归档", [], lambda o: {}),
    ("withdraw", "WithdrawCase", "撤回申请", [click.Option(["--reason"], required=True)],
     lambda o: {"reason": o["reason"]}),
    ("raise-issue", "RaiseIssue", "登记问题件",
     [click.Option(["--kind"], type=choice(IssueKind), required=True), click.Option(["--description"], required=True)],
     lambda o: {"kind": wire(IssueKind, pb.IssueKind.DESCRIPTOR, o["kind"]), "description": o["description"]}),
    ("assign", "AssignResponsibility", "问题件责任认定",
     [click.Option(["--issue"], required=True), click.Option(["--party"], type=choice(Party), required=True),
      click.Option(["--note"], default="")],
     lambda o: {"issue_id": o["issue"], "party": wire(Party, pb.Party.DESCRIPTOR, o["party"]), "note": o["note"]}),
    ("resolve-issue", "ResolveIssue", "问题件办结",
     [click.Option(["--issue"], required=True), click.Option(["--resolution"], required=True)],
     lambda o: {"issue_id": o["issue"], "resolution": o["resolution"]}),
    ("rate", "RateCase", "登记评价（1-5 分，低于 3 分须填理由）",
     [click.Option(["--score"], type=click.IntRange(1, 5), required=True), click.Option(["--reason"], default=""),
      click.Option(["--about"], type=choice(Party), default=Party.HANDLING_PLACE.value)],
     lambda o: {"score": o["score"], "reason": o["reason"], "about": wire(Party, pb.Party.DESCRIPTOR, o["about"])}),
    ("callback", "RecordCallback", "差评回访", [click.Option(["--note"], required=True)],
     lambda o: {"note": o["note"]}),
    ("close-review", "CloseBadReview", "差评整改/解释/申诉",
     [click.Option(["--outcome"], type=choice(RectificationOutcome), required=True),
      click.Option(["--note"], default="")],
     lambda o: {"outcome": wire(RectificationOutcome, pb.RectificationOutcome.DESCRIPTOR, o["outcome"]),
                "note": o["note"]}),
    ("feedback", "RecordFeedback", "登记整改反馈",
     [click.Option(["--satisfied/--dissatisfied"], default=True), click.Option(["--note"], default="")],
     lambda o: {"satisfied": o["satisfied"], "note": o["note"]}),
]


def _step_command(name: str, rpc: str, help_text: str, options: list[click.Option], fields: Fields) -> click.Command:
    def callback(case_id: str, expected_version: int, **o: Any) -> None:
        ctx = click.get_current_context()
        request = request_type(CASE_SERVICE, rpc)(
            case_id=case_id, expected_version=expected_version, **fields(o)
        )
        _show(ctx, _run(ctx, rpc, request))

    params: list[click.Parameter] = [
        click.Argument(["case_id"]),
        click.Option(["--expected-version"], type=int, default=0, help="仅当办件仍为此版本时执行"),
        *options,
    ]
    return click.Command(name, callback=callback, params=params, help=help_text)


for _spec in STEPS:
    case.add_command(_step_command(*_spec))


def as_of_stamp(value: str | None) -> Timestamp | None:
    """'2026-12-20' means the end of that day in Beijing; a full ISO time is taken as given."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("须为日期（2026-12-20）或时间（2026-12-20T15:00）") from None
    if len(value) == 10:
        moment = moment.replace(hour=23, minute=59, second=59)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@case.command("show")
@click.argument("case_id")
@click.option("--as-of", default=None, help="按某日（北京时间）计算时限状态，如 2026-12-20")
@click.pass_context
def show(ctx: click.Context, case_id: str, as_of: str | None) -> None:
    """显示办件、时限与办理记录。"""
    request = svc.GetCaseHistoryRequest(case_id=case_id, as_of=as_of_stamp(as_of))
    _show(ctx, _run(ctx, "GetCaseHistory", request))


@case.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in CaseState]),
              help="状态（可多次）")
@click.option("--overdue", is_flag=True, help="只看已超期")
@click.option("--warning", is_flag=True, help="看预警和超期")
@click.option("--partner", default="", help="对方站点行政区划代码")
@click.option("--page-size", default=50, show_default=True)
@click.option("--page-token", default="")
@click.option("--as-of", default=None, help="按某日判断预警/超期，如 2026-12-20")
@click.pass_context
def list_cases(ctx: click.Context, states: tuple[str, ...], overdue: bool, warning: bool, partner: str,
               page_size: int, page_token: str, as_of: str | None) -> None:
    """按状态、时限或对方站点列出办件。"""
    due = svc.DUE_FILTER_BREACHED if overdue else svc.DUE_FILTER_WARNING_OR_BREACHED if warning else 0
    request = svc.ListCasesRequest(
        states=[pb.CaseState.Value("CASE_STATE_" + s.upper()) for s in states],
        due=due, partner=partner, page_size=page_size, page_token=page_token, as_of=as_of_stamp(as_of),
    )
    response = _run(ctx, "ListCases", request)
    if ctx.obj["json"]:
        click.echo(render.as_json(response))
        return
    out.print(render.cases_table(response.cases))
    if response.next_page_token:
        out.print(f"下一页：--page-token {response.next_page_token}")


main.add_command(certs)
main.add_command(exchange)
main.add_command(nats_config)
main.add_command(audit)
main.add_command(reconcile)
main.add_command(staff)

if __name__ == "__main__":
    main()
