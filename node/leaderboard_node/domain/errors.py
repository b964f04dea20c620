"""Named domain errors.

Each error carries a stable ``code`` (snake_case, for programs), a ``message`` (for people),
the ``field`` of the request it is about (when there is one), and the HTTP ``status`` that the
client API answers with. The domain raises them; transports only translate.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "invalid_argument"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidArgument(DomainError):
    status = 400
    code = "invalid_argument"


class LeaderboardNotFound(DomainError):
    status = 404
    code = "leaderboard_not_found"


class TournamentNotFound(DomainError):
    status = 404
    code = "tournament_not_found"


class RecordNotFound(DomainError):
    status = 404
    code = "record_not_found"


class LeaderboardExists(DomainError):
    status = 409
    code = "leaderboard_exists"


class CursorInvalid(DomainError):
    status = 400
    code = "cursor_invalid"


class CursorExpired(DomainError):
    status = 400
    code = "cursor_expired"


class BucketExpired(DomainError):
    status = 404
    code = "bucket_expired"


class TournamentOutsideWindow(DomainError):
    status = 409
    code = "tournament_outside_active_window"


class TournamentMaxNumScore(DomainError):
    status = 409
    code = "tournament_max_num_score_reached"


class TournamentJoinRequired(DomainError):
    status = 403
    code = "tournament_join_required"


class TournamentFull(DomainError):
    status = 409
    code = "tournament_full"


class NotATournament(DomainError):
    status = 400
    code = "not_a_tournament"


class RanksDisabled(DomainError):
    status = 409
    code = "ranks_disabled"


class AuthoritativeLeaderboard(DomainError):
    status = 403
    code = "authoritative_leaderboard"


class NotReady(DomainError):
    status = 503
    code = "node_not_ready"


class LogUnavailable(DomainError):
    status = 503
    code = "log_unavailable"


class ReplicationTimeout(DomainError):
    status = 504
    code = "replication_timeout"
