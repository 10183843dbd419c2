"""Who serves where, who is told, and who may act: people and teams over the grid tree.

* :meth:`Directory.recipients` — whom a dispatch or escalation reaches. Level 0: a ``general``
  incident goes to the grid's own workers and patrol (即采即办); ``professional`` to the
  responsible department, with the grid worker informed (采办分离); ``emergency`` to both and the
  duty leader at once. Level 1 (not accepted in time): the grid leader. Level 2: the duty leader.
  "The grid's own" means the nearest grid, walking up from the incident's, that has someone in
  that role.
* :meth:`Directory.check` — may this caller take this action on this incident: the role (see
  :data:`alerts.lifecycle.ROLES`) and the scope (a person sees the grids they serve and the grids
  below them; a department member also sees incidents routed to their department; a person
  with no grids serves every grid).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alerts import lifecycle
from alerts.grids import GridTree
from alerts.settings import GridConfig, PersonConfig
from hub.errors import Forbidden
from hub.storage.incidents import Scope


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the API: a configured person, or the local control room."""

    id: str
    name: str
    roles: frozenset[str]
    grids: tuple[str, ...] = ()  # empty = every grid
    department: str = ""
    person: PersonConfig | None = field(default=None, compare=False)

    @classmethod
    def of(cls, person: PersonConfig) -> Caller:
        return cls(person.id, person.name or person.id, frozenset(person.roles), tuple(person.grids),
                   person.department, person)


#: The caller of requests without a token when ``http.anonymous`` is ``operator``.
CONTROL_ROOM = Caller("operator", "综治中心 control room", frozenset({"operator"}))


class Directory:
    def __init__(self, people: Iterable[PersonConfig], grids: list[GridConfig]) -> None:
        self.people = list(people)
        self.by_id = {p.id: p for p in self.people}
        self.tree = GridTree(grids)
        self._tokens = {p.token.get_secret_value(): p for p in self.people if p.token is not None}

    # -- identity ------------------------------------------------------------------------------
    def caller_for_token(self, token: str) -> Caller | None:
        person = self._tokens.get(token)
        return Caller.of(person) if person is not None else None

    # -- scope ---------------------------------------------------------------------------------
    def in_scope(self, grids: Iterable[str], grid: str | None) -> bool:
        """True if ``grid`` is one of ``grids`` or below one (empty ``grids`` = everywhere)."""
        grids = list(grids)
        if not grids:
            return True
        if grid is None:
            return False
        return any(grid in self.tree.subtree(g) if g in self.tree.grids else grid == g for g in grids)

    def can_see(self, caller: Caller, incident: dict[str, object]) -> bool:
        """In the caller's grids, or their department's; a member of a department and nothing else
        sees only their department's incidents (in their grids)."""
        in_grids = self.in_scope(caller.grids, _grid(incident))
        mine = "department" in caller.roles and bool(caller.department) and \
            incident.get("department") == caller.department
        if _department_only(caller):
            return mine and in_grids
        return in_grids or mine

    def scope(self, caller: Caller) -> Scope:
        """:meth:`can_see` as a query filter (so a listing's limit counts only what the caller sees)."""
        grids = sorted({code for g in caller.grids for code in self.expand(g)}) if caller.grids else None
        department = caller.department if "department" in caller.roles and caller.department else None
        return Scope(grids, department, _department_only(caller))

    def expand(self, grid: str) -> list[str]:
        """``grid`` and every grid below it (just ``grid`` when it is not in the tree)."""
        return sorted(self.tree.subtree(grid)) if grid in self.tree.grids else [grid]

    def check(self, caller: Caller, action: str, incident: dict[str, object]) -> None:
        """Raise :class:`Forbidden` unless ``caller`` may take ``action`` on ``incident``."""
        if not lifecycle.may(action, caller.roles):
            allowed = sorted(lifecycle.ROLES.get(action, frozenset()))
            raise Forbidden(f"{caller.id}: role {sorted(caller.roles)} may not {action!r} "
                            f"(roles that may: {', '.join(allowed)})")
        if not self.can_see(caller, incident):
            raise Forbidden(f"{caller.id}: incident {incident.get('id')} is in grid {_grid(incident)}, "
                            f"outside the grids you serve ({', '.join(caller.grids) or '-'})")

    # -- routing -------------------------------------------------------------------------------
    def _chain(self, grid: str | None) -> list[str | None]:
        """The incident's grid, then its ancestors, then None (people who serve everywhere)."""
        if grid is None:
            return [None]
        up = [a.code for a in self.tree.ancestors(grid)] if grid in self.tree.grids else []
        return [grid, *up, None]

    def nearest(self, grid: str | None, role: str) -> list[PersonConfig]:
        """People in ``role`` at the nearest grid (walking up) that has any."""
        with_role = [p for p in self.people if role in p.roles]
        for node in self._chain(grid):
            found = [p for p in with_role if (node in p.grids if node is not None else not p.grids)]
            if found:
                return found
        return []

    def department(self, name: str, grid: str | None) -> list[PersonConfig]:
        """Members of department ``name`` serving ``grid`` (or everywhere)."""
        return [p for p in self.people if "department" in p.roles and p.department == name
                and self.in_scope(p.grids, grid)]

    def recipients(self, *, grid: str | None, cls: str, department: str, level: int,
                   event: str = "assigned") -> list[PersonConfig]:
        """Who is told about a dispatch (level 0) or an escalation/overdue (level 1, 2)."""
        out: list[PersonConfig] = []
        if level >= 2:
            out += self.nearest(grid, "duty_leader")
        elif level == 1:
            out += self.nearest(grid, "grid_leader") or self.nearest(grid, "duty_leader")
        else:
            if cls in ("general", "emergency") or not department:
                out += self.nearest(grid, "grid_worker") + self.nearest(grid, "patrol")
            if cls in ("professional", "emergency") and department:
                out += self.department(department, grid) or self.nearest(grid, "grid_worker")
            if cls == "emergency":
                out += self.nearest(grid, "duty_leader")
        seen: set[str] = set()
        return [p for p in out if not (p.id in seen or seen.add(p.id))]  # type: ignore[func-returns-value]


def _department_only(caller: Caller) -> bool:
    return caller.roles == frozenset({"department"})


def _grid(incident: dict[str, object]) -> str | None:
    grid = incident.get("grid")
    return str(grid) if grid not in (None, "") else None
