"""The gate: a list of checks run as Great Expectations suites, one readable line per failure.

A gate is a set of :class:`Table` s (pandas frames with a name and key columns)
and a list of :class:`Check` s, each naming one GX Core expectation and the
table it applies to. :func:`run_gate` builds an ephemeral GX context with one
pandas data source, one data asset, suite and validation definition per table,
runs them, and turns the results into a :class:`GateResult`: which expectation
failed, on which table and column, on how many rows, with a few example values
and the keys of the rows that hold them. :func:`write_gate_result` writes it as
JSON (atomically), for DVC and for people.

Checks are plain data so that the suites can be read (and tested) without
importing great_expectations, which takes seconds.

Example:
    >>> import pandas as pd
    >>> table = Table("people.csv", pd.DataFrame({"id": ["a", "b"], "age": [30, 150]}), keys=("id",))
    >>> check = Check("people.csv", "ExpectColumnValuesToBeBetween", "age between 18 and 100",
    ...               column="age", kwargs={"min_value": 18, "max_value": 100})
    >>> result = run_gate("demo", [table], [check], source="memory")  # doctest: +SKIP
    >>> print(result.failure_lines()[0])  # doctest: +SKIP
    FAILED people.csv age: expect_column_values_to_be_between (age between 18 and 100) on 1 of 2 rows, e.g. 150 (b)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spineage.atomic import write_atomic
from spineage.errors import UserError

MAX_EXAMPLES = 3
"""Example values printed per failed expectation (the JSON result keeps up to 20)."""

_LONG_LIST = 12
"""Lists in an expectation's settings longer than this are summarised in the JSON result."""


@dataclass(frozen=True)
class Table:
    """A table to validate.

    Args:
        name: what the user knows it by, e.g. ``"sessions.csv"``.
        frame: its rows, with any computed columns the checks need.
        keys: columns naming a row (e.g. ``series_id``), shown beside example values.
        unit: what a row is, in the failure lines ("rows", or "values" for a table in long form).
        derived: True for a table made from another one (a long form, an index):
            checked, but left out of the summary's row counts.
    """

    name: str
    frame: pd.DataFrame
    keys: tuple[str, ...] = ()
    unit: str = "rows"
    derived: bool = False


@dataclass(frozen=True)
class Check:
    """One expectation on one table.

    Args:
        table: the :attr:`Table.name` it applies to.
        expectation: a class of ``great_expectations.expectations``, e.g.
            ``"ExpectColumnValuesToBeInSet"``.
        rule: the rule in words, printed with a failure, e.g. ``"sex is F or M"``.
        column: the column it checks (``None`` for table and column-pair checks).
        kwargs: the expectation's other arguments.
        only_where: ``(column, values)``: check only the rows whose column holds one of values.
        show: the column whose value is printed as the example (default ``column``);
            for a computed flag such as ``image_exists``, the path it was computed from.
    """

    table: str
    expectation: str
    rule: str
    column: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    only_where: tuple[str, tuple[Any, ...]] | None = None
    show: tuple[str, ...] = ()

    @property
    def expectation_type(self) -> str:
        """The expectation's snake_case name, as GX reports it."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.expectation).lower()

    def needed_columns(self) -> set[str]:
        """Columns the table must hold for this check to be evaluated."""
        columns = {self.column} if self.column else set()
        columns |= {value for key, value in self.kwargs.items() if key in ("column_A", "column_B")}
        columns |= set(self.show)
        if self.only_where:
            columns.add(self.only_where[0])
        return columns


@dataclass(frozen=True)
class Outcome:
    """The result of one check."""

    check: Check
    success: bool
    evaluated: bool = True
    element_count: int | None = None
    unexpected_count: int | None = None
    examples: tuple[str, ...] = ()
    detail: str = ""
    unit: str = "rows"

    def line(self) -> str:
        """One line saying what failed, where, on how many rows, with examples."""
        check = self.check
        where = check.table + (f" {check.column}" if check.column else "")
        if "column_A" in check.kwargs:
            where += f" {check.kwargs['column_A']}+{check.kwargs['column_B']}"
        head = f"FAILED {where}: {check.expectation_type} ({check.rule})"
        if not self.evaluated:
            return f"{head} could not be evaluated: {self.detail}"
        if self.unexpected_count is not None:
            head += f" on {self.unexpected_count} of {self.element_count} {self.unit}"
        elif self.detail:
            head += f": {self.detail}"
        if self.examples:
            head += ", e.g. " + "; ".join(self.examples[:MAX_EXAMPLES])
        return head

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain JSON-able data."""
        check = self.check
        return {
            "table": check.table,
            "column": check.column,
            "expectation": check.expectation_type,
            "rule": check.rule,
            "success": self.success,
            "evaluated": self.evaluated,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "examples": list(self.examples),
            "detail": self.detail,
            "kwargs": {key: _summarise(value) for key, value in check.kwargs.items()},
            "only_where": None if check.only_where is None else [check.only_where[0], _summarise(list(check.only_where[1]))],
        }


@dataclass(frozen=True)
class GateResult:
    """What a gate found: one :class:`Outcome` per check, plus what was read and skipped."""

    gate: str
    source: str
    tables: dict[str, int]
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why the gate could not run (a missing folder, a bad params file); such a result never succeeds."""

    @classmethod
    def could_not_run(cls, gate: str, source: str, error: str) -> GateResult:
        """The result of a gate that could not check anything: a failure saying why."""
        return cls(gate=gate, source=source, tables={}, outcomes=(), error=error)

    @property
    def success(self) -> bool:
        """True when the gate ran and every check passed."""
        return self.error is None and all(outcome.success for outcome in self.outcomes)

    @property
    def checked(self) -> tuple[Outcome, ...]:
        """The outcomes of the checks handed to GX (not those skipped for an absent optional column)."""
        return tuple(outcome for outcome in self.outcomes if outcome.evaluated or not outcome.success)

    @property
    def failures(self) -> tuple[Outcome, ...]:
        """The outcomes of the checks that failed, in check order."""
        return tuple(outcome for outcome in self.outcomes if not outcome.success)

    def failure_lines(self) -> list[str]:
        """One line per failed expectation."""
        return [outcome.line() for outcome in self.failures]

    def summary(self, report: Path | None = None) -> str:
        """One line: passed or failed, how many expectations, on what."""
        rows = ", ".join(f"{name} {count}" for name, count in self.tables.items())
        written = f"; result in {report}" if report is not None else ""
        if self.error is not None:
            return f"validate {self.gate}: could not run on {self.source}: {self.error}{written}"
        if self.success:
            return f"validate {self.gate}: all {len(self.checked)} expectations passed on {self.source} ({rows} rows){written}"
        return f"validate {self.gate}: {len(self.failures)} of {len(self.checked)} expectations failed on {self.source}{written}"

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able data (deterministic: no timestamps)."""
        from importlib.metadata import version

        return {
            "gate": self.gate,
            "success": self.success,
            "error": self.error,
            "source": self.source,
            "evaluated": len(self.checked),
            "failed": len(self.failures),
            "skipped": len(self.outcomes) - len(self.checked),
            "tables": dict(self.tables),
            "notes": list(self.notes),
            "settings": dict(self.settings),
            "great_expectations": version("great_expectations"),
            "expectations": [outcome.to_dict() for outcome in self.outcomes],
        }


def write_gate_result(result: GateResult, path: Path) -> Path:
    """Write ``result`` as JSON to ``path``, atomically (a temporary file, then os.replace).

    Raises:
        UserError: if the folder cannot be created or written.
    """
    path = Path(path)
    text = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
    try:
        write_atomic(path, lambda temporary: temporary.write_text(text))
    except OSError as error:
        raise UserError(f"Expected to write the validation result to {path}, found: {error.strerror or error}") from None
    return path


GATE_RUNNING = "the gate started and has not finished (or was killed)"
"""What a gate's result says while the gate runs: never an earlier success."""


def write_gate_error(gate: str, source: str | Path, error: str, path: Path) -> Path:
    """Replace the result at ``path`` with a failure saying why the gate could not run, atomically.

    A gate about to run, or one that cannot (a missing folder, a bad params
    file), must not leave an earlier ``"success": true`` behind for the next
    stage to trust.

    Raises:
        UserError: if the folder cannot be created or written.
    """
    return write_gate_result(GateResult.could_not_run(gate, str(source), error), path)


def guarded_run(gate: str, source: str | Path, report: Path, run: Callable[[], GateResult]) -> GateResult:
    """Run a gate (``run`` writes its result to ``report``) so that no earlier success outlives it.

    The result at ``report`` is marked failed (:data:`GATE_RUNNING`) before the
    gate starts; a gate that cannot run (``run`` raises a :class:`UserError`: a
    missing folder or table, a bad params file) leaves a failure saying why; one
    that is killed leaves the "not finished" failure. Either way the next stage
    reads ``"success": false``, never the success of an earlier run.

    Raises:
        UserError: what ``run`` raised, or a report that cannot be written.
    """
    write_gate_error(gate, source, GATE_RUNNING, report)
    try:
        return run()
    except UserError as error:
        try:
            write_gate_error(gate, source, str(error), report)
        except UserError:
            pass  # writable a moment ago: keep the user's error, and the "not finished" failure
        raise


def run_gate(
    gate: str,
    tables: list[Table],
    checks: list[Check],
    *,
    source: str,
    notes: tuple[str, ...] = (),
    settings: dict[str, Any] | None = None,
) -> GateResult:
    """Run ``checks`` on ``tables`` with Great Expectations and collect the outcomes.

    A check whose columns are missing from its table is not handed to GX (the
    table's required-columns check reports them); it is recorded as not
    evaluated but does not count as a second failure.

    Args:
        gate: the gate's name (``raw``, ``features``).
        tables: the tables, by :attr:`Table.name`.
        checks: the checks, in the order their failures should be printed.
        source: the folder validated, for the summary.
        notes: things left out (absent optional tables), kept in the JSON result.
        settings: the settings used, kept in the JSON result.
    """
    by_name = {table.name: table for table in tables}
    unknown = sorted({check.table for check in checks} - set(by_name))
    if unknown:
        raise ValueError(f"Expected checks on known tables {sorted(by_name)}, found {unknown}")
    outcomes: dict[int, Outcome] = {}
    runnable: dict[int, Check] = {}
    for index, check in enumerate(checks):
        missing = sorted(check.needed_columns() - set(by_name[check.table].frame.columns))
        if missing:
            outcomes[index] = Outcome(check, success=True, evaluated=False, detail=f"skipped: no column {', '.join(missing)}")
        else:
            runnable[index] = check
    outcomes.update(_validate_with_gx(by_name, runnable))
    return GateResult(
        gate=gate,
        source=source,
        tables={table.name: len(table.frame) for table in tables if not table.derived},
        outcomes=tuple(outcomes[index] for index in range(len(checks))),
        notes=tuple(notes),
        settings=dict(settings or {}),
    )


def _validate_with_gx(tables: dict[str, Table], checks: dict[int, Check]) -> dict[int, Outcome]:
    """One ephemeral context, one asset + suite + validation definition per table."""
    if not checks:
        return {}
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    data_source = context.data_sources.add_pandas(name="spineage")
    outcomes: dict[int, Outcome] = {}
    for number, table in enumerate(tables.values()):
        table_checks = [(index, check) for index, check in checks.items() if check.table == table.name]
        if not table_checks:
            continue
        name = f"t{number}_{re.sub(r'[^A-Za-z0-9_]+', '_', table.name)}"
        asset = data_source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(name)
        expectations = []
        for index, check in table_checks:
            kwargs = dict(check.kwargs)
            if check.column is not None:
                kwargs["column"] = check.column
            if check.only_where is not None:
                column, values = check.only_where
                kwargs["row_condition"] = Column(column).is_in(list(values))
            expectations.append(getattr(gx.expectations, check.expectation)(**kwargs, meta={"check": index}))
        # All at once: suite.add_expectation re-serialises the whole suite on every call.
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        keys = [key for key in table.keys if key in table.frame.columns]
        shown = sorted({column for _, check in table_checks for column in check.show} - set(keys))
        result_format = {"result_format": "SUMMARY", "unexpected_index_column_names": keys + shown}
        validation = _quietly(lambda: definition.run(batch_parameters={"dataframe": table.frame}, result_format=result_format))
        for expectation_result in validation.results:
            index = int(expectation_result.expectation_config.meta["check"])
            outcomes[index] = _outcome(checks[index], expectation_result, keys, table.unit)
    return outcomes


def import_great_expectations():
    """Import great_expectations with its analytics, progress bars and chatter turned off."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # After the import: one GX module sets its own logger to INFO when it is imported.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.ERROR)
    return gx


def _quietly(run):
    """Run ``run()`` with warnings silenced (GX and pandas deprecations are not the user's business)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run()


def _outcome(check: Check, result: Any, keys: list[str], unit: str) -> Outcome:
    """Turn one GX ExpectationValidationResult into an :class:`Outcome`."""
    info = result.exception_info or {}
    raised = [value for value in info.values() if isinstance(value, dict) and value.get("raised_exception")]
    if info.get("raised_exception") or raised:
        message = info.get("exception_message") or (raised[0].get("exception_message") if raised else "")
        return Outcome(check, success=False, evaluated=False, detail=str(message).splitlines()[0] if message else "GX raised an error")
    details = result.result or {}
    if check.expectation.startswith("ExpectTableColumns"):
        return _columns_outcome(check, bool(result.success), details)
    if "unexpected_count" not in details:
        observed = details.get("observed_value")
        return Outcome(check, success=bool(result.success), detail="" if observed is None else f"observed {_short(observed)}")
    return Outcome(
        check,
        success=bool(result.success),
        element_count=details.get("element_count"),
        unexpected_count=details.get("unexpected_count"),
        examples=_examples(check, details, keys),
        unit=unit,
    )


def _columns_outcome(check: Check, success: bool, details: dict[str, Any]) -> Outcome:
    """Missing and unexpected columns (or the first misplaced one) of a table-columns check."""
    observed = list(details.get("observed_value") or [])
    expected = list(check.kwargs.get("column_list") or check.kwargs.get("column_set") or [])
    missing = [column for column in expected if column not in observed]
    exact = check.kwargs.get("exact_match", True) or "column_list" in check.kwargs
    unexpected = [column for column in observed if column not in expected] if exact else []
    examples = [f"missing {column}" for column in missing] + [f"unexpected {column}" for column in unexpected]
    count = len(missing) + len(unexpected)
    if not success and not count:
        moved = [(position, want, got) for position, (want, got) in enumerate(zip(expected, observed)) if want != got]
        count = len(moved)
        examples = [f"position {position}: expected {want}, found {got}" for position, want, got in moved]
    if success:
        detail = ""
    elif exact:
        detail = f"found {len(observed)} columns where {len(expected)} were expected"
    else:
        detail = f"{len(missing)} of the {len(expected)} required columns missing"
    return Outcome(check, success=success, element_count=None, unexpected_count=None, examples=tuple(examples[:20]), detail=detail)


def _examples(check: Check, details: dict[str, Any], keys: list[str]) -> tuple[str, ...]:
    """Up to 20 distinct example values, each with the keys of the first row holding it."""
    values = details.get("partial_unexpected_list") or []
    indexed = details.get("partial_unexpected_index_list") or []
    shown_columns = list(check.show) or ([check.column] if check.column else [check.kwargs.get("column_A"), check.kwargs.get("column_B")])
    examples: list[str] = []
    seen: set[str] = set()
    for position, value in enumerate(values if values else indexed):
        row = indexed[position] if position < len(indexed) and isinstance(indexed[position], dict) else {}
        if check.show and row:
            text = "/".join(_short(row.get(column)) for column in check.show)
        elif isinstance(value, (list, tuple)):
            text = "/".join(_short(part) for part in value)
        else:
            text = _short(value)
        if text in seen:
            continue
        seen.add(text)
        where = " ".join(str(row[key]) for key in keys if key in row and key not in shown_columns)
        examples.append(f"{text} ({where})" if where else text)
        if len(examples) == 20:
            break
    return tuple(examples)


def _short(value: Any) -> str:
    """A value as the user would type it: numbers without trailing zeros, strings quoted."""
    if value is None:
        return "empty"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(part) for part in value[:_LONG_LIST]) + (", ...]" if len(value) > _LONG_LIST else "]")
    return str(value)


def _summarise(value: Any) -> Any:
    """An expectation setting for the JSON result: long lists (e.g. all subject ids) become a count."""
    if isinstance(value, (list, tuple, set, frozenset)):
        value = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if len(value) > _LONG_LIST:
            return f"<{len(value)} values>"
        return [list(item) if isinstance(item, tuple) else item for item in value]
    return value
