"""The start page: the listener's state and the mail at a glance, with two charts of mail
accepted and refused per hour (the last day and the last week) drawn as inline SVG on the
server, so the page needs no script and no outside asset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask_admin import AdminIndexView, expose

from mxsmtp_web.store import status
from mxsmtp_web.store.models import utcnow
from mxsmtp_web.web.access import ViewerAccess, visible_mailboxes

HOURS_IN_DAY = 24
HOURS_IN_WEEK = 7 * 24
HOOK_ERRORS_SHOWN = 5

# SVG user units; the element scales to the width of the page.
CHART_WIDTH = 480
PLOT_LEFT = 30
PLOT_TOP = 8
PLOT_HEIGHT = 120
CHART_HEIGHT = PLOT_TOP + PLOT_HEIGHT + 24
TICK_LABEL_ROOM = 40  # a label needs this much width to the right of its tick


@dataclass(frozen=True)
class Bar:
    """One hour: refused stacked on top of accepted."""

    key: str  # the hour as YYYY-MM-DDTHH (UTC), for tests and tools
    title: str  # what a screen reader or a hover says
    x: float
    width: float
    accepted_y: float
    accepted_height: float
    refused_y: float
    refused_height: float


@dataclass(frozen=True)
class Chart:
    id: str
    caption: str
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]  # x position and label under the axis
    peak: int
    hours: tuple[status.HourOfMail, ...]  # for the table fallback
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    plot_left: int = PLOT_LEFT
    plot_top: int = PLOT_TOP
    plot_bottom: int = PLOT_TOP + PLOT_HEIGHT

    @property
    def accepted(self) -> int:
        return sum(h.accepted for h in self.hours)

    @property
    def refused(self) -> int:
        return sum(h.refused for h in self.hours)


def hour_title(hour: status.HourOfMail) -> str:
    end = hour.start + timedelta(hours=1)
    return (
        f"{hour.start:%a %d %b %H:%M}–{end:%H:%M} UTC: "
        f"{hour.accepted} accepted, {hour.refused} refused"
    )


def build_chart(
    chart_id: str,
    caption: str,
    hours: Sequence[status.HourOfMail],
    tick_label: Callable[[datetime], str | None],
) -> Chart:
    """Lay out stacked bars for `hours`; `tick_label` names the hours that get an axis label."""
    peak = max((h.accepted + h.refused for h in hours), default=0)
    scale = PLOT_HEIGHT / max(peak, 1)
    slot = (CHART_WIDTH - PLOT_LEFT) / max(len(hours), 1)
    gap = slot * 0.15 if slot > 4 else 0.0
    bottom = PLOT_TOP + PLOT_HEIGHT
    bars, ticks = [], []
    for index, hour in enumerate(hours):
        x = PLOT_LEFT + index * slot
        accepted_height = hour.accepted * scale
        refused_height = hour.refused * scale
        bars.append(
            Bar(
                key=f"{hour.start:%Y-%m-%dT%H}",
                title=hour_title(hour),
                x=round(x + gap / 2, 2),
                width=round(slot - gap, 2),
                accepted_y=round(bottom - accepted_height, 2),
                accepted_height=round(accepted_height, 2),
                refused_y=round(bottom - accepted_height - refused_height, 2),
                refused_height=round(refused_height, 2),
            )
        )
        label = tick_label(hour.start)
        if label and x + TICK_LABEL_ROOM <= CHART_WIDTH:
            ticks.append((round(x, 2), label))
    return Chart(chart_id, caption, tuple(bars), tuple(ticks), peak, tuple(hours))


def _every_third_hour(start: datetime) -> str | None:
    return f"{start:%H}:00" if start.hour % 3 == 0 else None


def _midnight(start: datetime) -> str | None:
    return f"{start:%a %d}" if start.hour == 0 else None


def traffic_charts(now: datetime) -> list[Chart]:
    """The last 24 hours and the last 7 days, by hour; one query per table for both."""
    week = status.mail_per_hour(HOURS_IN_WEEK, now, visible_mailboxes())
    return [
        build_chart(
            "chart-day", "Last 24 hours, per hour (UTC)", week[-HOURS_IN_DAY:], _every_third_hour
        ),
        build_chart("chart-week", "Last 7 days, per hour (UTC)", week, _midnight),
    ]


def refusal_table(today: datetime) -> list[tuple[str, int, int]]:
    """(check, refused today, refused in the last 7 days), the busiest check first."""
    week = status.refusals_by_check(today - timedelta(days=6))
    by_today = dict(status.refusals_by_check(today))
    return [(check, by_today.get(check, 0), count) for check, count in week]


class HomeView(ViewerAccess, AdminIndexView):
    @expose("/")
    def index(self) -> Any:
        now = utcnow()
        today = status.start_of_day(now)
        return self.render(
            "mxsmtp/home.html",
            now=now,
            listeners=status.reports("smtp"),
            workers=status.reports("worker"),
            counts=status.mail_counts(now, visible_mailboxes()),
            refusals=refusal_table(today),
            hook_errors=status.last_hook_errors(HOOK_ERRORS_SHOWN),
            charts=traffic_charts(now),
        )
