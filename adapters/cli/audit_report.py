"""The HTML trail of one case: for an auditor to open in a browser and print (A4, landscape)."""

from __future__ import annotations

from html import escape
from typing import Any

from adapters.cli.render import PARTY, local_time
from tongban.v1 import case_pb2 as pb

_STATUS = {
    pb.CLOCK_STATUS_MET: ("按时完成", "ok"), pb.CLOCK_STATUS_LATE: ("超期完成", "bad"),
    pb.CLOCK_STATUS_BREACHED: ("超期", "bad"), pb.CLOCK_STATUS_WARNING: ("预警", "warn"),
    pb.CLOCK_STATUS_RUNNING: ("计时中", ""), pb.CLOCK_STATUS_PAUSED: ("暂停计时", ""),
}
_STYLE = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } .meta { color: #444; margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { border: 1px solid #999; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #eee; } td.hash { font-family: monospace; font-size: 10px; word-break: break-all; }
.ok { color: #176317; } .bad { color: #b00020; font-weight: bold; } .warn { color: #a15c00; }
footer { margin-top: 16px; font-size: 11px; color: #555; }
@page { size: A4 landscape; margin: 12mm; } @media print { body { margin: 0; } }
"""


def _due(due_date: str) -> str:
    return f"<br><small>到期 {escape(due_date)}</small>" if due_date else ""


def trail_html(response: Any, generated_at: str) -> str:
    """Render a TraceCaseResponse as a standalone HTML page (no scripts, no external resources)."""
    case = response.case
    rows = []
    for s in response.steps:
        status, css = _STATUS.get(s.deadline, ("", ""))
        rows.append(
            "<tr>" + "".join([
                f"<td>{s.order}</td>", f"<td>{escape(local_time(s.at))}</td>", f"<td>{escape(s.step_label)}</td>",
                f"<td>{escape(s.site)}#{s.seq}</td>", f"<td>{escape(s.actor.name or s.actor.staff_id)}"
                f"<br><small>{escape(s.actor.staff_id)}</small></td>",
                f"<td>{escape(PARTY.get(s.responsible, ''))}</td>",
                f"<td>{escape(s.clock_label)}{_due(s.due_date)}</td>",
                f'<td class="{css}">{escape(status)}</td>', f"<td>{escape('、'.join(s.receipted_by))}</td>",
                f'<td class="hash">{escape(s.event_hash)}</td>',
            ]) + "</tr>"
        )
    heads = "".join(f"<li>{escape(o)}：<code>{escape(h)}</code></li>" for o, h in sorted(response.chain_heads.items()))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>办件 {escape(case.case_number)} 责任追溯</title>
<style>{_STYLE}</style></head><body>
<h1>办件 {escape(case.case_number)} 责任追溯报告</h1>
<div class="meta">事项：{escape(case.item_name)}（{escape(case.item_code)}）
收件地 {escape(case.receiving_site)} → 办理地 {escape(case.handling_site)}
当前状态：{escape(case.state_label)}　申请人：{escape(case.applicant.name)}
{escape(case.applicant.id_number)}<br>办件标识 {escape(case.case_id)}</div>
<table><thead><tr><th>#</th><th>时间（北京）</th><th>环节</th><th>站点#序号</th><th>操作人</th><th>责任方</th>
<th>时限</th><th>是否按时</th><th>对方回执</th><th>事件哈希</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<footer><p>各来源站点的哈希链头：</p><ul>{heads}</ul>
<p>生成时间 {escape(generated_at)}。事件哈希按 docs/partner-api.md 的规范计算，
可用 <code>tongban audit verify</code> 离线核验导出的证据包。</p>
</footer></body></html>
"""
