"""A deliberately simple reference model of one leaderboard bucket: a dict and sorted()."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReferenceBoard:
    descending: bool = True
    records: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # owner -> (score, subscore, num)

    def write(self, owner: str, operator: str, score: int, subscore: int) -> None:
        current = self.records.get(owner)
        if operator == "best":
            if current is not None:
                better = (score, subscore) > current[:2] if self.descending else (score, subscore) < current[:2]
                if not better:
                    return
            new = (score, subscore)
        elif operator == "set":
            new = (score, subscore)
        elif operator == "incr":
            base = current[:2] if current else (0, 0)
            new = (base[0] + score, base[1] + subscore)
        else:
            base = current[:2] if current else (0, 0)
            new = (max(0, base[0] - score), max(0, base[1] - subscore))
        if current is not None and new == current[:2]:
            return
        self.records[owner] = (new[0], new[1], (current[2] if current else 0) + 1)

    def delete(self, owner: str) -> None:
        self.records.pop(owner, None)

    def ordered(self) -> list[tuple[str, int, int, int]]:
        sign = -1 if self.descending else 1
        items = sorted(self.records.items(), key=lambda kv: (sign * kv[1][0], sign * kv[1][1], kv[0]))
        return [(owner, s, ss, n) for owner, (s, ss, n) in items]

    def around(self, owner: str, limit: int) -> list[str]:
        order = [o for o, *_ in self.ordered()]
        if owner not in order:
            return []
        size = min(limit, len(order))
        index = order.index(owner)
        start = max(0, min(index - (size - 1) // 2, len(order) - size))
        return order[start:start + size]
