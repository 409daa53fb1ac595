"""Course commands: ``microcred course connect|status|reevaluate``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from service.cli.common import _bootstrap, _db, _engine_of, _identity, _report, group
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.errors import NotFound

course_app = group(
    "course", "Courses: connect one to its LMS, see its sync health, re-evaluate its learners."
)


@course_app.command("connect")
def course_connect(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
    source: Annotated[
        str, typer.Option("--source", help="Source connection name (microcred source add).")
    ],
    lms_course_id: Annotated[
        str,
        typer.Option(
            help="The LMS's own course id: Moodle course/view.php?id=…, Canvas "
            "$Canvas.course.id. Default: the LTI context id (Moodle's course id)."
        ),
    ] = "",
    interval: Annotated[
        int | None,
        typer.Option(
            help="Seconds between this course's scheduled pulls (default "
            "MICROCRED_SYNC_INTERVAL_SECONDS)."
        ),
    ] = None,
) -> None:
    """Connect a course to its LMS data source: the worker then pulls its roster (NRPS)
    and results on schedule, and the instructor's page shows Sync from LMS."""
    from service.flows import wiring
    from service.sources import sync

    settings = _bootstrap()
    with _db(settings, write=True) as s:
        conn = sync.get_connection(s, name=source)
        setup = wiring.connect_source(
            s,
            course_id=course_id,
            connection_id=conn.id,
            lms_course_id=lms_course_id,
            actor="cli",
            now=utcnow(),
            interval_seconds=interval,
        )
        s.commit()
    every = setup.sync_interval_seconds or settings.sync_interval_seconds
    typer.echo(
        f"course {course_id} connected to {source!r} (LMS course "
        f"{setup.lms_course_id or 'from the LTI context'}); the worker pulls it within "
        f"seconds, then every {every} s"
    )


@course_app.command("status")
def course_status(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
) -> None:
    """The course's sync health: last pull, roster size, errors, items needing attention."""
    from service.flows import syncing

    settings = _bootstrap()
    with _db(settings) as s:
        h = syncing.sync_health(s, course_id=course_id, settings=settings)
    if not h.connected:
        typer.echo(f"course {course_id} is not connected (microcred course connect)")
        raise typer.Exit(1)
    typer.echo(h.pulled_text(utcnow()))
    if h.waiting:
        typer.echo("a pull is queued")
    if h.members is not None:
        typer.echo(f"roster: {h.members} members")
    if h.error:
        typer.echo(f"last pull failed ({h.failures} in a row): {h.error}")
    if h.roster_error:
        typer.echo(f"roster not read: {h.roster_error}")
    if h.attention:
        typer.echo(f"{h.attention} items need attention (microcred sync --course {course_id})")


@course_app.command("reevaluate")
def course_reevaluate(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
    sync: Annotated[
        bool, typer.Option("--sync", help="Pull the course's results from its LMS first.")
    ] = False,
    queue_only: Annotated[
        bool,
        typer.Option(
            "--queue", help="Only queue the learners for the workers (`microcred worker`)."
        ),
    ] = False,
) -> None:
    """Re-evaluate every learner of a course (issues, upgrades, flags), with a progress bar.

    The learners are queued (docs/scale.md) and this command works on the queue until it
    is empty; workers running meanwhile share the work (their part is not counted here).
    """
    from service import evaluation
    from service.db.models import Course
    from service.flows import evaluation_queue, syncing

    settings = _identity(_bootstrap())
    with _engine_of(settings) as engine:
        pull = syncing.fetch_course(engine, course_id=course_id) if sync else None
        with db_session(engine, write=True) as s:
            if s.get(Course, course_id) is None:
                raise NotFound(f"no course {course_id}")
            now = utcnow()
            if pull is not None:
                syncing.store_fetched(s, pull=pull, now=now, actor="cli")
            queued = evaluation.enqueue(
                s, course_id=course_id, reason="microcred course reevaluate"
            )
            s.commit()
        if queue_only:
            typer.echo(f"{queued} learners queued for the workers")
            return
        with typer.progressbar(length=max(queued, 1), label=f"course {course_id}") as bar:
            seen = 0

            def step(done: int, total: int) -> None:
                nonlocal seen
                bar.length = max(total, 1)
                bar.update(done - seen)
                seen = done

            summary = evaluation_queue.run_course_jobs(
                engine, settings=settings, course_id=course_id, actor="cli", progress=step
            )
    _report(
        summary,
        f"{summary.learners} learners, {summary.decisions} decisions ({summary.stored} new, "
        f"{summary.unchanged} unchanged):",
    )
    typer.echo(json.dumps(summary.as_dict()))
