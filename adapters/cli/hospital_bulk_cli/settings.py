"""Settings of the command line: the service's own :class:`ServiceSettings`, so that one
environment configures both and one mapping turns them into a processor.

A flag wins over its environment variable, which wins over the default: the flags
given are passed to ``ServiceSettings``, which reads the environment for the rest.
:func:`with_settings` adds the same options to every command that needs them.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from hospital_bulk.stores import default_store_url

from .errors import CliError

if TYPE_CHECKING:
    from hospital_bulk import Job
    from hospital_bulk_fastapi import ServiceSettings

P = ParamSpec("P")
T = TypeVar("T")

#: ``--directory embedded``: the stand-in directory, in this process.
EMBEDDED = "embedded"
SETTINGS_PANEL = "Settings (flag > environment variable > default)"


def store_hint() -> str:
    """The default store as ``--help`` shows it: home abbreviated."""
    return default_store_url().replace(str(Path.home()), "~", 1)


#: Each setting a command may take, by ``ServiceSettings`` field: its type, flags,
#: environment variable (the service's own), metavar, help, limits and default. The
#: defaults are ServiceSettings' own (a test checks), written out so that ``--help``
#: shows them without importing the web stack; ``None`` leaves the store's to it.
_SETTINGS: dict[str, tuple[type, tuple[str, ...], str, str, str, dict[str, Any], object]] = {
    "api_base": (
        str,
        ("--api", "--directory"),
        "HOSPITAL_API_BASE",
        "URL|embedded",
        "The Hospital Directory: its base URL, or `embedded` for a stand-in inside this"
        " process (offline; gone when the command ends). Commands on an existing job"
        " use the job's own unless this names one.",
        {},
        "https://hospital-directory.onrender.com",
    ),
    "embedded_latency": (
        float,
        ("--embedded-latency",),
        "HOSPITAL_BULK_EMBEDDED_LATENCY",
        "SECONDS",
        "How long a create takes in the embedded directory (the real one: ~5 s).",
        {"min": 0.0},
        0.5,
    ),
    "rate_limit": (
        int,
        ("--rate-limit",),
        "HOSPITAL_BULK_RATE_LIMIT",
        "CREATES",
        "Creates sent per window (the upstream allows 30 a minute); 0 sends unpaced.",
        {"min": 0},
        30,
    ),
    "rate_window": (
        float,
        ("--rate-window",),
        "HOSPITAL_BULK_RATE_WINDOW",
        "SECONDS",
        "Length of the rate-limit window.",
        {"min": 0.001},
        60.0,
    ),
    "concurrency": (
        int,
        ("--concurrency",),
        "HOSPITAL_BULK_CONCURRENCY",
        "N",
        "Creates in flight at once.",
        {"min": 1},
        20,
    ),
    "max_rows": (
        int,
        ("--max-rows",),
        "HOSPITAL_BULK_MAX_ROWS",
        "N",
        "Largest file accepted, in data rows.",
        {"min": 1},
        10_000,
    ),
    "graceful_timeout": (
        float,
        ("--graceful-timeout",),
        "HOSPITAL_BULK_GRACEFUL_TIMEOUT",
        "SECONDS",
        "On SIGTERM or Ctrl-C: how long creates in flight and open requests get to finish."
        " Jobs still running then are recorded interrupted, resumed at the next start.",
        {"min": 0.0, "max": 3600.0},
        30.0,
    ),
    "resume_on_start": (
        bool,
        ("--resume-on-start/--no-resume-on-start",),
        "HOSPITAL_BULK_RESUME_ON_START",
        "",
        "At start-up, resume the jobs a stop or a dead process left unfinished"
        " (interrupted, or pending with nobody to start them).",
        {},
        True,
    ),
    "store": (
        str,
        ("--store",),
        "HOSPITAL_BULK_STORE",
        "URL",
        "Job store: sqlite:///PATH, memory:// or redis://HOST. The default is the"
        " service's, so both see the same jobs.",
        {"show_default": store_hint()},
        None,
    ),
}
DEFAULTS = {field: setting[-1] for field, setting in _SETTINGS.items()}
OPTIONS = {
    field: Annotated[
        kind if default is not None else kind | None,
        typer.Option(
            *flags,
            envvar=env,
            show_envvar=True,
            metavar=metavar,
            help=help,
            rich_help_panel=SETTINGS_PANEL,
            **limits,
        ),
    ]
    for field, (kind, flags, env, metavar, help, limits, default) in _SETTINGS.items()
}


#: What a command that runs jobs takes.
RUNNING = ("api_base", "embedded_latency", "rate_limit", "rate_window", "concurrency", "store")


def with_settings(
    *fields: str, defaults: dict[str, object] | None = None, **fixed: object
) -> Callable[[Callable[P, T]], Callable[..., T]]:
    """Give a command the options of ``fields`` and call it with ``settings``, the
    ``ServiceSettings`` they make: ``defaults`` change the command's defaults,
    ``fixed`` values are not options at all."""
    chosen = {**DEFAULTS, **(defaults or {})}

    def decorate(command: Callable[P, T]) -> Callable[..., T]:
        signature = inspect.signature(command)
        # Evaluated here, as typer reads this signature: ``settings`` is left out, as its
        # type may be imported for type checking only.
        kept = [
            p.replace(annotation=_evaluated(p.annotation, command))
            for p in signature.parameters.values()
            if p.name != "settings"
        ]
        added = [
            inspect.Parameter(
                field,
                inspect.Parameter.KEYWORD_ONLY,
                default=chosen[field],
                annotation=OPTIONS[field],
            )
            for field in fields
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            given = {field: kwargs.pop(field) for field in fields}
            kwargs["settings"] = load_settings({**given, **fixed})
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]  # read by typer through inspect.signature
        wrapper.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
        return wrapper

    return decorate


def _evaluated(annotation: object, command: Callable[..., object]) -> object:
    if isinstance(annotation, str):
        return eval(annotation, command.__globals__)
    return annotation


def load_settings(values: dict[str, object]) -> ServiceSettings:
    """The settings with these flags (the others from the environment or defaults);
    an invalid value is a :class:`CliError` naming its flag."""
    import pydantic

    from hospital_bulk_fastapi import ServiceSettings

    try:
        return ServiceSettings.model_validate({k: v for k, v in values.items() if v is not None})
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{_flag(problem['loc'])}: {problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()
        )
        raise CliError(problems) from None


def _flag(location: tuple[int | str, ...]) -> str:
    field = str(location[0]) if location else "?"
    return "--api" if field == "api_base" else "--" + field.replace("_", "-")


def describe(settings: ServiceSettings) -> str:
    """Where the rows go, for a header line."""
    if settings.embedded:
        return f"the embedded directory ({settings.embedded_latency:g} s per create)"
    return settings.api_base


def for_job(settings: ServiceSettings, job: Job) -> ServiceSettings:
    """The settings to work on ``job`` with: the directory its rows went to, unless
    ``--api`` (or ``HOSPITAL_API_BASE``) names one, which the engine then checks."""
    if job.directory is None or "api_base" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"api_base": job.directory})


def lasts(settings: ServiceSettings) -> bool:
    """Whether the store outlives this process: a job in memory cannot be resumed."""
    return not settings.store.startswith("memory:")


def command_line(*words: str, settings: ServiceSettings) -> str:
    """``hospital-bulk WORDS`` reaching the same directory and store, to print as a hint."""
    return shlex.join(
        ["hospital-bulk", *words, "--store", settings.store, "--api", settings.api_base]
    )


JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON for machines instead of tables."),
]
#: For the commands that run a job (import, resume): events as they happen.
JsonLinesOption = Annotated[
    bool,
    typer.Option("--json", help="Print each event as one JSON line, then a summary line."),
]
