"""The delivery interface every channel implements, and the notice it delivers.

A :class:`Notice` is one thing to tell one recipient (or one broadcast target) about one
incident transition: "incident X opened in grid Y, you are asked to handle it", "X is
overdue and escalated to you", "X was resolved". Its ``key`` is an idempotency key that
stays the same across retries and restarts, so receivers can drop duplicates of an
at-least-once delivery (webhooks send it as ``X-Sanwang-Key``; MQTT/WS carry it in JSON).

A channel's :meth:`Channel.send` either returns (delivered) or raises
:class:`~hub.errors.DeliveryError`: ``retryable=True`` for network errors, timeouts, HTTP 5xx,
408 and 429 (the dispatcher retries with backoff, honouring ``retry_after_s``), and
``retryable=False`` for errors a retry cannot fix (HTTP 4xx, a robot's "bad signature"),
which go straight to the dead-letter list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

CLASS_NAMES = {"general": "一般事件", "professional": "专业事件", "emergency": "应急事件"}
STATE_NAMES = {
    "received": "接收登记", "classified": "梳理分类", "dispatched": "分流转办", "accepted": "部门承办",
    "resolved": "结果反馈", "closed": "办结归档", "supervised": "跟踪督办", "false_alarm": "误报",
}
EVENT_NAMES = {
    "opened": "新事件 New incident", "assigned": "派工 Assigned to you", "escalated": "督办升级 Escalated",
    "overdue": "超时督办 Overdue", "updated": "事件更新 Updated", "transition": "状态变更 State changed",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice for one recipient about one incident transition (JSON-serialisable)."""

    key: str  # idempotency key: same across retries and restarts
    event: str  # opened | assigned | escalated | overdue | updated | transition
    incident: dict[str, Any]  # API contract v1 incident dict (id, class, state, grid, title, ...)
    state: str  # incident state after the transition
    action: str | None = None  # accept, resolve, escalate, ...
    actor: str = "system"
    note: str = ""
    at: str = ""  # ISO 8601 time of the transition
    level: int = 0  # escalation level: 0 grid worker / department, 1 grid leader, 2 duty leader
    recipient: dict[str, Any] = field(default_factory=dict)  # {id, name, roles, phone}; {} = broadcast
    url: str = ""  # link to the incident on the hub's pages, when known

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def headline(self) -> str:
        """A one-line summary, Chinese first (robots and phone notifications)."""
        inc = self.incident
        cls_name = CLASS_NAMES.get(str(inc.get("class")), str(inc.get("class")))
        event = EVENT_NAMES.get(self.event, self.event)
        return f"【{cls_name}】{event}: {inc.get('title') or inc.get('kind') or inc.get('id')}"

    def lines(self) -> list[str]:
        """Detail lines (grid, state, time, who, note) for robot markdown and e-mail-like bodies."""
        inc = self.incident
        state = STATE_NAMES.get(self.state, self.state)
        out = [f"网格 Grid: {inc.get('grid') or '未分配 unassigned'}",
               f"状态 State: {state} ({self.state})",
               f"时间 Time: {self.at or inc.get('updated_at') or ''}",
               f"事件编号 Incident: {inc.get('id')}"]
        if self.recipient.get("name"):
            out.append(f"承办 To: {self.recipient['name']}")
        if self.actor and self.actor != "system":
            out.append(f"操作人 By: {self.actor}")
        if self.note:
            out.append(f"备注 Note: {self.note}")
        if self.url:
            out.append(f"查看 Open: {self.url}")
        return out


class Channel(ABC):
    """One configured way to deliver notices. Instances are long-lived and may hold sessions."""

    type: ClassVar[str]

    @abstractmethod
    async def send(self, notice: Notice) -> None:
        """Deliver ``notice`` or raise :class:`~hub.errors.DeliveryError`."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions/connections."""

    def describe(self) -> str:
        """Where this channel delivers, with secrets and tokens redacted (logs, API)."""
        return self.type
